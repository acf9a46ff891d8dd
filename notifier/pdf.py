"""HTML → PDF with WeasyPrint, in processes of their own: laying out a digest takes CPU for
a second or more, and delivery must never wait behind it.

The fonts come from the system (fontconfig): the project's setup installs Debian's
BIZ UD Gothic (a universal-design typeface) and IPAex Gothic; WeasyPrint embeds the
glyphs it uses. Each process loads WeasyPrint and the fonts once, when it starts, and
keeps them (and the images it has decoded: a whole-ward notice's QR code is the same in
every area's digest) for the documents that follow.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any, TypeVar

# the typefaces and weights the print templates use, so that loading them is done at start
SAMPLE = """<!doctype html><html lang="ja"><body style="font-family: 'BIZ UDGothic',
'IPAexGothic', 'Noto Sans CJK JP', sans-serif"><h1>練馬区 緊急情報</h1>
<p>くらしのお知らせ 令和8年11月23日 03-3993-1111 https://www.city.nerima.tokyo.jp/</p>
</body></html>"""

IMAGES_KEPT = 256  # decoded images a process keeps (QR codes: a few KiB each)

_fonts: Any = None  # the process's weasyprint FontConfiguration
_images: dict[str, Any] = {}
_peers: Barrier | None = None
_T = TypeVar("_T")


# where a contents entry's page number goes, in a digest's front matter (a comment: an
# escaped title can't make one)
PAGE_OF = re.compile(r"<!--page-of:([^>]+)-->")


def render(html: str) -> bytes:
    """One PDF from one HTML document (runs in a PDF process)."""
    pdf: bytes = _layout(html).write_pdf()
    return pdf


def render_booklets(body: str | None, files: list[list[str]]) -> list[bytes]:
    """PDF files of one booklet (runs in a PDF process): each file holds its covers' copies
    in turn, a copy being a cover's pages, then the body's.

    The body is laid out once for every copy; then each cover, with each contents entry's
    page (its anchor's page in the body, counted from 1) written into it."""
    inner = _layout(body) if body is not None else None
    pages = inner.pages if inner is not None else []
    page_of = {name: n for n, page in enumerate(pages, 1) for name in page.anchors}
    pdfs = []
    for covers in files:
        fronts = [_layout(PAGE_OF.sub(lambda m: str(page_of[m[1]]), cover)) for cover in covers]
        every = [page for front in fronts for page in (*front.pages, *pages)]
        pdfs.append(fronts[0].copy(every).write_pdf())
    return pdfs


def _layout(html: str) -> Any:
    """A laid-out WeasyPrint document, with the process's fonts and decoded images."""
    global _fonts
    from weasyprint import HTML  # imported in the worker: the service process stays small
    from weasyprint.text.fonts import FontConfiguration

    if _fonts is None:
        _fonts = FontConfiguration()
    if len(_images) > IMAGES_KEPT:
        _images.clear()
    document = HTML(string=html, base_url=str(Path.cwd()))
    return document.render(font_config=_fonts, cache=_images)


def _load(peers: Barrier) -> None:
    """Runs first in each new PDF process: WeasyPrint and the fonts, loaded now."""
    global _peers
    _peers = peers
    render(SAMPLE)


def _meet() -> None:
    """Held by one process until every process of the pool holds one: all are started."""
    assert _peers is not None
    _peers.wait(timeout=120)


class PdfMaker:
    """A pool of PDF processes, all started together on first use (or by ``start``) and
    shut down with the service."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._started: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every process and load WeasyPrint and the fonts in each, side by side;
        returns once all are ready. A pool started lazily would start its second process
        only when a second document is already waiting for it."""
        if self._started is None:
            self._started = asyncio.create_task(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        # forkserver, not fork: forking a process that runs threads (the event loop's
        # executors, the SMTP sink in tests) can leave the child holding a dead lock
        context = multiprocessing.get_context("forkserver")
        peers = context.Barrier(self.processes)
        pool = ProcessPoolExecutor(
            max_workers=self.processes, mp_context=context, initializer=_load, initargs=(peers,)
        )
        self._pool = pool
        loop = asyncio.get_running_loop()
        # each call finds no idle process, so the pool starts one more for it
        await asyncio.gather(*(loop.run_in_executor(pool, _meet) for _ in range(self.processes)))

    @property
    def pids(self) -> list[int]:
        """The PDF processes' ids (for their CPU time, in the benchmark)."""
        processes = self._pool._processes.values() if self._pool is not None else []
        return [process.pid for process in processes if process.pid is not None]

    async def make(self, html: str) -> bytes:
        return await self._run(render, html)

    async def booklets(self, body: str | None, files: list[list[str]]) -> list[bytes]:
        """``render_booklets`` in a PDF process."""
        return await self._run(render_booklets, body, files)

    async def _run(self, work: Callable[..., _T], *args: Any) -> _T:
        await self.start()
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def write(self, html: str, path: Path) -> Path:
        return await save(await self.make(html), path)

    def close(self) -> None:
        if self._started is not None:
            self._started.cancel()
            self._started = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


async def save(pdf: bytes, path: Path) -> Path:
    """Write a PDF whole (a crash never leaves half a file)."""
    from channels.outbox import write_atomic  # channels use this module too

    await asyncio.to_thread(write_atomic, path, pdf)
    return path


def processes_for_digest() -> int:
    """Both cores for a digest built on its own (CLI); one inside the service."""
    return max(1, min(4, os.cpu_count() or 1))
