"""HTML → PDF with WeasyPrint, in processes of their own: laying out a digest takes CPU for
a second or more, and delivery must never wait behind it.

The fonts come from the system (fontconfig): the project's setup installs Debian's
BIZ UD Gothic (a universal-design typeface) and IPAex Gothic, Nanum Barun Gothic for
Korean and Droid Sans Fallback for Simplified Chinese (print/_fonts.html says which text
each prints); WeasyPrint embeds the glyphs it uses. Each process loads WeasyPrint and the
fonts once, when it starts, and keeps them (and the images it has decoded: a whole-ward
notice's QR code is the same in every area's digest) for the documents that follow.
"""

from __future__ import annotations

import asyncio
import functools
import io
import multiprocessing
import os
import re
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any, TypeVar

# a page in the typefaces and weights the print templates use (their font stacks, from
# print/_fonts.html, in place of ``FONTS``), so that loading them is done at start
SAMPLE = """<!doctype html><html lang="ja"><head><style>FONTS</style></head><body>
<h1>練馬区 緊急情報 12月2日（水）午前9時00分</h1>
<p>くらしのお知らせ 令和8年11月23日 03-3993-1111 https://www.city.nerima.tokyo.jp/</p>
<p lang="en">Evacuation order</p><p lang="zh-Hans">这里说明</p><p lang="ko">한국어 안내</p>
</body></html>"""
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

IMAGES_KEPT = 256  # decoded images a process keeps (QR codes: a few KiB each)

# ``latin:FILE``, in a print template's @font-face: the Latin letters, digits and signs of an
# installed font file, as a face of their own. The templates print Latin in BIZ UDPGothic
# (proportional), the rest in BIZ UD Gothic; given the whole of BIZ UDPGothic, fontconfig
# would find nothing left for BIZ UD Gothic (the same characters) to add, and drop it.
LATIN = "latin:"
LATIN_CHARACTERS = [*range(0x20, 0x7F), *range(0xA0, 0x250)]
FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))

_fonts: Any = None  # the process's weasyprint FontConfiguration
_fetch: Any = None  # and its URL fetcher
_images: dict[str, Any] = {}
_peers: Barrier | None = None
_T = TypeVar("_T")


# where a contents entry's page number goes, in a digest's front matter (a comment: an
# escaped title can't make one)
PAGE_OF = re.compile(r"<!--page-of:([^>]+)-->")
# a document's type-size steps (a flyer's), tried from the largest by ``render_fitted``
STEP = re.compile(r'<body data-step="0" data-steps="(\d+)">')


def render(html: str) -> bytes:
    """One PDF from one HTML document (runs in a PDF process)."""
    pdf: bytes = _layout(html).write_pdf()
    return pdf


def render_fitted(html: str) -> bytes:
    """A document at the first of its steps that fits one page, filling it (a flyer: its
    ``<body data-step="0" data-steps="N">``, step 0 in the largest type; ``data-fill``
    once one fits); at the last step, it takes the pages it needs. A document without
    steps is laid out as it is."""
    found = STEP.search(html)
    steps = int(found[1]) if found else 1

    def at(step: int, fill: bool = False) -> Any:
        body = f'<body data-step="{step}" data-steps="{steps}"{" data-fill" * fill}>'
        return _layout(STEP.sub(body, html, 1)) if found else _layout(html)

    for step in range(steps):
        document = at(step)
        if len(document.pages) == 1 and _within(document.pages[0]):
            filled = at(step, fill=True) if found else document
            document = filled if len(filled.pages) == 1 and _within(filled.pages[0]) else document
            break
    pdf: bytes = document.write_pdf()
    return pdf


def _within(page: Any) -> bool:
    """Whether every box of a laid-out page is inside its printable area (a box that does
    not break across pages, such as a flex container, runs past its foot instead)."""
    area = page._page_box
    left, top = area.content_box_x(), area.content_box_y()
    right, bottom = left + area.width + 1, top + area.height + 1  # a pixel for rounding
    return all(
        box.position_x + box.margin_width() <= right
        and box.position_y + box.margin_height() <= bottom
        for box in area.descendants()
        if box is not area and box.element_tag not in ("html", "body")
    )


def render_booklets(
    body: str | None, files: list[list[str]], folded: list[list[str]] | None = None
) -> list[bytes]:
    """PDF files of one booklet (runs in a PDF process): each file holds its covers' copies
    in turn, a copy being a cover's pages, then the body's.

    The body is laid out once for every copy; then each cover, with each contents entry's
    page (its anchor's page in the body, counted from 1) written into it. ``folded`` (each
    cover with the notices in place of its contents) is a copy of its own where it takes
    fewer pages: see ``_Folding``."""
    inner = _layout(body) if body is not None else None
    pages = inner.pages if inner is not None else []
    page_of = {name: n for n, page in enumerate(pages, 1) for name in page.anchors}
    folding = _Folding(len(pages)) if folded is not None else None
    pdfs = []
    for i, covers in enumerate(files):
        every: list[Any] = []
        first = None
        for j, cover in enumerate(covers):

            def front(cover: str = cover) -> Any:
                return _layout(PAGE_OF.sub(lambda m: str(page_of[m[1]]), cover))

            document, whole = (
                folding.choose(folded[i][j], front) if folding and folded else (front(), False)
            )
            every += document.pages if whole else [*document.pages, *pages]
            first = first or document
        assert first is not None
        pdfs.append(first.copy(every).write_pdf())
    return pdfs


class _Folding:
    """Whether a copy is printed folded: when its folded cover takes fewer pages than its
    cover and the body together. The copies of a file differ in their address only, so
    the cover is laid out to compare only while the folded copies' length changes; once
    folding loses, it is not tried again in the call."""

    def __init__(self, body_pages: int) -> None:
        self.body_pages = body_pages
        self.compared: tuple[int, int] | None = None  # (folded pages, booklet pages)
        self.on = True

    def choose(self, folded: str, front: Callable[[], Any]) -> tuple[Any, bool]:
        """The copy's first document (``front`` lays out the cover), and whether it is the
        whole copy: the folded one."""
        if not self.on:
            return front(), False
        alone, booklet = _layout(folded), None
        if self.compared is None or self.compared[0] != len(alone.pages):
            booklet = front()
            self.compared = (len(alone.pages), len(booklet.pages) + self.body_pages)
        self.on = self.compared[0] < self.compared[1]
        if self.on:
            return alone, True
        return booklet or front(), False


def _layout(html: str) -> Any:
    """A laid-out WeasyPrint document, with the process's fonts and decoded images."""
    global _fonts, _fetch
    from weasyprint import HTML  # imported in the worker: the service process stays small
    from weasyprint.text.fonts import FontConfiguration

    if _fonts is None:
        _fonts, _fetch = FontConfiguration(), _fetcher()
    if len(_images) > IMAGES_KEPT:
        _images.clear()
    document = HTML(string=html, base_url=str(Path.cwd()), url_fetcher=_fetch)
    return document.render(font_config=_fonts, cache=_images)


@functools.cache
def latin_face(name: str) -> bytes:
    """The Latin characters of the installed font file ``name`` (a .ttf), as a font."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    found = next((p for folder in FONT_FOLDERS for p in folder.rglob(name)), None)
    if found is None:
        raise FileNotFoundError(f"no font file {name} under {', '.join(map(str, FONT_FOLDERS))}")
    font = TTFont(found)
    options = subset.Options(name_IDs=["*"])  # its names; the usual layout features
    options.drop_tables += ["meta"]  # which fontTools does not subset, and says so
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=LATIN_CHARACTERS)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _fetcher() -> Any:
    """WeasyPrint's URL fetcher, which also serves ``latin:`` fonts."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class Fetcher(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith(LATIN):
                body = latin_face(url.removeprefix(LATIN))
                return URLFetcherResponse(url, body, {"Content-Type": "font/ttf"})
            return super().fetch(url, headers)

    return Fetcher()


def _load(peers: Barrier) -> None:
    """Runs first in each new PDF process: WeasyPrint and the fonts, loaded now. Ctrl-C
    is the parent's to handle (it shuts the pool down), not each process's."""
    from jinja2 import Environment, FileSystemLoader

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    global _peers
    _peers = peers
    templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    fonts = templates.get_template("print/_fonts.html")
    render(SAMPLE.replace("FONTS", fonts.render()))


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

    async def fitted(self, html: str) -> bytes:
        """``render_fitted`` in a PDF process."""
        return await self._run(render_fitted, html)

    async def booklets(
        self, body: str | None, files: list[list[str]], folded: list[list[str]] | None = None
    ) -> list[bytes]:
        """``render_booklets`` in a PDF process."""
        return await self._run(render_booklets, body, files, folded)

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
