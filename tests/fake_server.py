"""What the fake LINE and X servers share: serving on a free port of 127.0.0.1, and
holding answers back in a way that ends at once when the fake stops."""

from __future__ import annotations

import asyncio
from typing import Any, Self

from aiohttp import web


class FakeServer:
    """Subclasses add their routes (and anything to ready first) in ``_routes``."""

    def __init__(self) -> None:
        self.url = ""
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _middlewares(self) -> list[Any]:
        return []

    async def start(self) -> str:
        """Serve on a random port of 127.0.0.1; returns the base URL."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        app = web.Application(middlewares=self._middlewares())
        self._routes(app)
        self._stopping.clear()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving; requests held back by a fault wake up and answer at once."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake as soon as the fake stops."""
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass
