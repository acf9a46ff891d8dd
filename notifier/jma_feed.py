"""The JMA reader: polls the JMA's Atom feeds, fetches each new telegram once, drafts alerts.

Each poll asks every feed with ``If-Modified-Since`` (its last ``Last-Modified``, kept in
Redis, so a restart asks the same); a 304 fetches nothing. Of a changed feed, only entries
whose title is a telegram the reader takes, linking to the feed's own host, are fetched,
each once by whichever process claims its URL first. An error is logged and the next
interval tries again; the loop never stops on one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis

from notifier.config import Settings
from notifier.jma import LANDSLIDE, QUAKES, R06, RECORD_RAIN, WARNINGS, JmaError, load, parse
from notifier.jma_drafts import Draft, DraftStore, digest
from notifier.keys import Keys
from notifier.logs import event
from notifier.streams import as_text

log = logging.getLogger(__name__)
ATOM = "{http://www.w3.org/2005/Atom}"
FEED_MAX_BYTES = 4 * 1024 * 1024
TELEGRAM_MAX_BYTES = 2 * 1024 * 1024
FETCHED_DAYS = 3  # the high-frequency feeds hold minutes of entries; a claim is kept days
USER_AGENT = "notifier (a ward's alert service; JMA reader)"


def wanted(title: str) -> bool:
    """Whether a feed entry's title (the telegram's Control/Title) is one the reader takes."""
    return title in (*WARNINGS, LANDSLIDE, RECORD_RAIN, *QUAKES) or title.startswith(R06)


def entries(raw: bytes, feed_url: str) -> list[str]:
    """The telegram URLs of an Atom feed's wanted entries, on the feed's own host."""
    root = load(raw, FEED_MAX_BYTES, "feed")
    if root.tag != f"{ATOM}feed":
        raise JmaError("feed", "not an Atom feed")
    host = urlsplit(feed_url)[:2]
    urls = []
    for entry in root.iterfind(f"{ATOM}entry"):
        title = (entry.findtext(f"{ATOM}title") or "").strip()
        link = entry.find(f"{ATOM}link")
        href = (link.get("href") or "").strip() if link is not None else ""
        if wanted(title) and href and urlsplit(href)[:2] == host and href not in urls:
            urls.append(href)
    return urls


class JmaReader:
    """``poll_once()`` reads every feed once; ``run(stop)`` polls every ``jma_interval``
    seconds until ``stop`` is set. ``on_draft`` is awaited with each new draft (for the
    desk, or an auto-issue); the reader itself sends nothing."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        session: aiohttp.ClientSession | None = None,
        store: DraftStore | None = None,
        on_draft: Callable[[Draft], Awaitable[None]] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.settings, self.redis = settings, redis
        self.keys = Keys(settings.redis_prefix)
        self.store = store or DraftStore(redis, self.keys, settings)
        self.on_draft = on_draft
        self._session, self._own_session = session, session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.jma_feeds and self.settings.jma_areas)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": USER_AGENT}
            )
        return self._session

    async def run(self, stop: asyncio.Event) -> None:
        if not self.enabled:
            event(log, "jma_reader_off")
            return
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as e:  # Redis away, a bug: log, and try at the next interval
                event(log, "jma_poll_failed", logging.ERROR, error=repr(e))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.jma_interval)

    async def poll_once(self) -> list[Draft]:
        """Read each feed once; the drafts made (an error in one feed or telegram is
        logged and leaves the rest to go on)."""
        if not self.enabled:
            return []
        drafts: list[Draft] = []
        await self.redis.zremrangebyscore(
            self.keys.jma_fetched, "-inf", time.time() - FETCHED_DAYS * 86400
        )
        for feed in self.settings.jma_feeds:
            key = self.keys.jma_feed(digest(feed))
            try:
                urls, modified = await self._feed(feed, key)
            except (aiohttp.ClientError, TimeoutError, JmaError) as e:
                event(log, "jma_feed_failed", logging.WARNING, feed=feed, error=repr(e))
                continue
            complete = True
            for url in urls:
                fetched, draft = await self._telegram(url)
                complete = complete and fetched
                if draft is not None:
                    drafts.append(draft)
            if modified and complete:  # else the next poll reads the feed whole again
                await self.redis.hset(key, "last_modified", modified)
        return drafts

    async def _feed(self, url: str, key: str) -> tuple[list[str], str | None]:
        """The feed's wanted telegram URLs and its Last-Modified; none when unchanged."""
        since = await self.redis.hget(key, "last_modified")
        headers = {"If-Modified-Since": as_text(since)} if since else {}
        async with self._client().get(url, headers=headers) as response:
            if response.status == 304:
                return [], None
            if response.status != 200:
                raise JmaError("feed", f"the feed answered HTTP {response.status}")
            raw = await _read(response, FEED_MAX_BYTES, "feed")
            modified = response.headers.get("Last-Modified")
        return entries(raw, url), modified

    async def _telegram(self, url: str) -> tuple[bool, Draft | None]:
        """Fetch, parse and take one telegram: (whether it is done with, the draft)."""
        fetched = self.keys.jma_fetched
        if not await self.redis.zadd(fetched, {url: time.time()}, nx=True):
            return True, None  # fetched before, or another process has it
        try:
            async with self._client().get(url) as response:
                if response.status != 200:
                    raise JmaError("Report", f"the telegram answered HTTP {response.status}")
                raw = await _read(response, TELEGRAM_MAX_BYTES, "Report")
        except (aiohttp.ClientError, TimeoutError, JmaError) as e:
            await self.redis.zrem(fetched, url)  # the next interval tries it again
            event(log, "jma_fetch_failed", logging.WARNING, url=url, error=repr(e))
            return False, None
        return True, await self._take(url, raw)

    async def _take(self, url: str, raw: bytes) -> Draft | None:
        try:
            telegram = parse(raw, TELEGRAM_MAX_BYTES)
        except JmaError as e:  # not fetched again: it would fail the same way
            event(log, "jma_telegram_refused", logging.WARNING, url=url, error=str(e))
            return None
        draft = await self.store.take(telegram, url)
        if draft is None:
            return None
        event(log, "jma_draft", draft=draft.id, kind=draft.source.kind, type=draft.alert["type"])
        if self.on_draft is not None:
            try:
                await self.on_draft(draft)
            except Exception as e:  # the desk's hook must not stop the reader
                event(log, "jma_on_draft_failed", logging.ERROR, draft=draft.id, error=repr(e))
        return draft


async def _read(response: aiohttp.ClientResponse, limit: int, element: str) -> bytes:
    """The response body, refused past ``limit`` bytes without reading the rest."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise JmaError(element, f"the document is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
