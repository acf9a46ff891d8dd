"""HTML → PDF with WeasyPrint, in a process of its own: laying out a digest takes CPU for
seconds, and delivery must never wait behind it.

The fonts come from the system (fontconfig): the project's setup installs Debian's
BIZ UD Gothic (a universal-design typeface) and IPAex Gothic; WeasyPrint embeds the
glyphs it uses.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def render(html: str) -> bytes:
    """One PDF from one HTML document (runs in the worker process)."""
    from weasyprint import HTML  # imported in the worker: the service process stays small

    pdf: bytes = HTML(string=html, base_url=str(Path.cwd())).write_pdf()
    return pdf


class PdfMaker:
    """A pool of PDF processes, started on first use and shut down with the service."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    async def make(self, html: str) -> bytes:
        if self._pool is None:
            # forkserver, not fork: forking a process that runs threads (the event loop's
            # executors, the SMTP sink in tests) can leave the child holding a dead lock
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=context)
        return await asyncio.get_running_loop().run_in_executor(self._pool, render, html)

    async def write(self, html: str, path: Path) -> Path:
        from channels.outbox import write_atomic  # channels use this module too

        pdf = await self.make(html)
        await asyncio.to_thread(write_atomic, path, pdf)
        return path

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def processes_for_digest() -> int:
    """Both cores for a digest built on its own (CLI); one inside the service."""
    return max(1, min(4, os.cpu_count() or 1))
