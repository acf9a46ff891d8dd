"""The service's parts (api, dispatcher, channel workers, scheduler with the JMA reader)
and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

import channels
from channels.base import Context
from notifier import channel_registry
from notifier.config import Settings
from notifier.digest import DigestBuilder, build_due
from notifier.dispatch import Dispatcher
from notifier.jma_feed import JmaReader
from notifier.logs import event
from notifier.pdf import PdfMaker
from notifier.runtime import Runtime
from notifier.scheduler import Scheduler
from notifier.web import make_app
from notifier.worker import ChannelWorker

log = logging.getLogger("notifier.service")
PARTS = ("api", "dispatch", "workers", "scheduler")


class CannotListen(Exception):
    """The API's address can't be had; the message names it and the setting to change."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        reason = os.strerror(error.errno) if error.errno else str(error)
        if error.errno == errno.EADDRINUSE:
            advice = "another program has it: set NOTIFIER_HTTP_PORT to a free port"
        else:
            advice = "set NOTIFIER_HTTP_HOST to an address of this machine (or NOTIFIER_HTTP_PORT)"
        super().__init__(f"can't listen on {host}:{port} ({reason}); {advice}")


class Service:
    """Start the chosen parts; ``stop`` stops reading, finishes in-flight work or hands it back."""

    def __init__(
        self,
        settings: Settings,
        parts: Iterable[str] = PARTS,
        channel_names: Iterable[str] | None = None,
        grace: float = 10.0,
    ) -> None:
        self.settings = settings
        self.parts = set(parts)
        self.channel_names = list(
            channel_registry.names() if channel_names is None else channel_names
        )
        self.grace = grace
        self.runtime = Runtime.open(settings)
        self._stop = asyncio.Event()
        self.workers: list[ChannelWorker] = []
        self._pdf: PdfMaker | None = None
        self._warming: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._scheduler: Scheduler | None = None
        self._jma: JmaReader | None = None
        self._channels: list[channels.Channel] = []
        self.port: int | None = None

    async def start(self) -> None:
        rt = self.runtime
        await rt.redis.ping()
        await rt.subscribers.upgrade_index()
        if "api" in self.parts:
            self._runner = web.AppRunner(make_app(rt), handle_signals=False)
            await self._runner.setup()
            host, port = self.settings.http_host, self.settings.http_port
            site = web.TCPSite(self._runner, host, port)
            try:
                await site.start()
            except OSError as e:  # the port is taken, or the address is not this machine's
                await self._runner.cleanup()
                self._runner = None
                raise CannotListen(host, port, e) from e
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else self.settings.http_port
        if "dispatch" in self.parts:
            dispatcher = Dispatcher(
                self.settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics
            )
            self._spawn("dispatcher", dispatcher.run(self._stop))
        if "workers" in self.parts:
            context = Context(self.settings, rt.redis, rt.keys, rt.metrics)
            for name in self.channel_names:
                channel = channels.create(name, context)
                self._channels.append(channel)
                worker = ChannelWorker(
                    channel,
                    self.settings,
                    rt.redis,
                    rt.keys,
                    rt.subscribers,
                    concurrency=self.settings.worker_concurrency,
                )
                self.workers.append(worker)
                self._spawn(f"worker:{name}", worker.run(self._stop))
                if self.settings.print_warm_up:
                    self._warming.append(asyncio.create_task(channel.warm()))
        if "scheduler" in self.parts:
            self._pdf = PdfMaker()
            builder = DigestBuilder(rt, self._pdf)

            async def digest() -> list[Path]:
                return await build_due(builder, rt.redis, rt.keys, datetime.now(UTC))

            self._scheduler = Scheduler(self.settings, rt.redis, rt.keys, digest=digest)
            self._scheduler.start()
            self._jma = JmaReader(
                self.settings, rt.redis, store=rt.drafts.drafts, on_draft=rt.drafts.taken
            )
            if self._jma.enabled:  # the JMA's telegrams for the ward's areas, as drafts
                self._spawn("jma", self._jma.run(self._stop))
        # what start-up made (modules, models, templates) lives as long as the service:
        # frozen, it is left out of every full collection, which then walks only what
        # delivery makes and holds a worker's loop up for less
        gc.freeze()
        event(
            log,
            "service.started",
            parts=sorted(self.parts),
            channels=self.channel_names,
            port=self.port,
        )

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(self._guard(name, coro), name=name))

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """A part that ends by itself (it rides out Redis outages) has crashed: say so."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            event(log, "part.crashed", logging.ERROR, part=name, error=repr(e))
            raise

    async def stop(self) -> None:
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._pdf is not None:
            await asyncio.to_thread(self._pdf.close)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=self.grace)
            for task in pending:  # what is still in flight stays pending in Redis: reclaimed later
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await asyncio.gather(*self._warming, return_exceptions=True)
        if self._jma is not None:
            await self._jma.close()
        for channel in self._channels:
            await channel.close()
        await self.runtime.close()
        event(log, "service.stopped", parts=sorted(self.parts))

    async def wait(self) -> None:
        """Until stop is asked or a part ends for good."""
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()

    def request_stop(self) -> None:
        self._stop.set()
