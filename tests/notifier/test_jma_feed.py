"""The JMA reader against a fake JMA: Atom feeds and telegrams served by aiohttp here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from redis.asyncio import Redis

from notifier.jma_drafts import Draft, digest
from notifier.jma_feed import JmaReader
from tests.conftest import REDIS_URL, make_settings

SPECS = Path(__file__).resolve().parent.parent / "specs" / "jma"
MODIFIED = "Wed, 02 Dec 2026 03:00:00 GMT"


@dataclass
class FakeJma:
    base: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # path, If-Modified-Since
    broken_telegrams: bool = False

    def feed(self) -> bytes:
        entries = [
            ("気象警報・注意報（Ｒ０６）（土砂）", f"{self.base}/data/VPWW56.xml"),
            ("府県天気予報（Ｒ０６）", f"{self.base}/data/VPFD51.xml"),  # not read
            ("土砂災害警戒情報", "https://elsewhere.example/data/VXWW50.xml"),  # another host
        ]
        items = "".join(
            f"<entry><title>{title}</title><id>urn:uuid:{n}</id>"
            f"<updated>2026-12-02T03:00:00Z</updated><author><name>稚内地方気象台</name></author>"
            f'<link type="application/xml" href="{href}"/><content type="text">…</content></entry>'
            for n, (title, href) in enumerate(entries)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom" lang="ja">'
            f"<title>高頻度（随時）</title><id>urn:x</id><updated>2026-12-02T03:00:00Z</updated>{items}</feed>"
        ).encode()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        since = request.headers.get("If-Modified-Since")
        self.requests.append((request.path, since))
        if request.path == "/broken.xml":
            return web.Response(status=503)
        if request.path == "/feed.xml":
            if since == MODIFIED:
                return web.Response(status=304)
            return web.Response(
                body=self.feed(),
                content_type="application/atom+xml",
                headers={"Last-Modified": MODIFIED},
            )
        if request.path == "/data/VPWW56.xml" and self.broken_telegrams:
            return web.Response(status=500)
        if request.path == "/data/VPWW56.xml":
            return web.Response(
                body=(SPECS / "15_16_01_241031_VPWW56.xml").read_bytes(),
                content_type="application/xml",
            )
        return web.Response(status=404)


@pytest.fixture
async def jma() -> AsyncIterator[FakeJma]:
    fake = FakeJma()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fake.serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.aclose()


def reader(tmp_path: Path, prefix: str, jma: FakeJma, redis: Redis, **more: object) -> JmaReader:
    feeds = [f"{jma.base}/broken.xml", f"{jma.base}/feed.xml"]
    settings = make_settings(tmp_path, prefix, jma_feeds=feeds, jma_areas=["0121400"], **more)
    return JmaReader(settings, redis)


async def test_a_new_telegram_is_fetched_once_and_a_304_fetches_nothing(
    tmp_path: Path, prefix: str, jma: FakeJma, redis: Redis
) -> None:
    first = reader(tmp_path, prefix, jma, redis)
    try:
        drafts = await first.poll_once()  # the broken feed is logged and passed over
        assert [d.alert["title"] for d in drafts] == ["レベル４土砂災害危険警報が発表されました"]
        assert drafts[0].source.url == f"{jma.base}/data/VPWW56.xml"
        assert jma.requests == [
            ("/broken.xml", None),
            ("/feed.xml", None),
            ("/data/VPWW56.xml", None),  # neither the forecast nor the other host's
        ]
        jma.requests.clear()
        assert await first.poll_once() == []
        assert jma.requests == [("/broken.xml", None), ("/feed.xml", MODIFIED)]
    finally:
        await first.close()
    # with the feed read whole again (its Last-Modified gone), no telegram is fetched twice
    await redis.delete(first.keys.jma_feed(digest(f"{jma.base}/feed.xml")))
    again = reader(tmp_path, prefix, jma, redis)
    try:
        jma.requests.clear()
        assert await again.poll_once() == []
        assert [path for path, _ in jma.requests] == ["/broken.xml", "/feed.xml"]
    finally:
        await again.close()


async def test_a_telegram_that_failed_to_come_is_fetched_at_the_next_interval(
    tmp_path: Path, prefix: str, jma: FakeJma, redis: Redis
) -> None:
    async def on_draft(draft: Draft) -> None:
        raise RuntimeError("the desk's hook failed")  # logged; the reader goes on

    settings = make_settings(
        tmp_path, prefix, jma_feeds=[f"{jma.base}/feed.xml"], jma_areas=["0121400"]
    )
    polling = JmaReader(settings, redis, on_draft=on_draft)
    try:
        jma.broken_telegrams = True
        assert await polling.poll_once() == []
        assert jma.requests == [("/feed.xml", None), ("/data/VPWW56.xml", None)]
        jma.broken_telegrams = False
        jma.requests.clear()
        drafts = await polling.poll_once()
        # the feed is read whole again (its Last-Modified was not kept), the telegram fetched
        assert jma.requests == [("/feed.xml", None), ("/data/VPWW56.xml", None)]
        assert [d.source.kind for d in drafts] == ["レベル４土砂災害危険警報"]
        jma.requests.clear()
        assert await polling.poll_once() == []
        assert jma.requests == [("/feed.xml", MODIFIED)]
    finally:
        await polling.close()


async def test_run_polls_until_stopped_and_an_off_reader_does_nothing(
    tmp_path: Path, prefix: str, jma: FakeJma, redis: Redis
) -> None:
    taken: list[Draft] = []
    done = asyncio.Event()

    async def on_draft(draft: Draft) -> None:
        taken.append(draft)
        done.set()

    settings = make_settings(
        tmp_path, prefix, jma_feeds=[f"{jma.base}/feed.xml"], jma_areas=["0121400"]
    )
    running = JmaReader(settings, redis, on_draft=on_draft)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        await asyncio.wait_for(done.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 5)  # it does not wait out the 60 s interval
    finally:
        await running.close()
    assert [d.source.kind for d in taken] == ["レベル４土砂災害危険警報"]
    off = JmaReader(make_settings(tmp_path, prefix, jma_feeds=[f"{jma.base}/feed.xml"]), redis)
    jma.requests.clear()
    assert not off.enabled
    await off.run(asyncio.Event())  # returns at once
    assert await off.poll_once() == []
    assert jma.requests == []


async def test_a_hostile_feed_or_telegram_fetches_and_drafts_nothing(
    tmp_path: Path, prefix: str, redis: Redis
) -> None:
    hostile = b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x "boom">]><feed>&x;</feed>'
    requests: list[str] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        requests.append(request.path)
        if request.path == "/bad-feed.xml":
            return web.Response(body=hostile)
        if request.path == "/feed.xml":
            entry = (
                "<entry><title>震度速報</title><id>urn:1</id>"
                f'<link href="http://{request.host}/data/VXSE51.xml"/></entry>'
            )
            return web.Response(
                body=f'<feed xmlns="http://www.w3.org/2005/Atom">{entry}</feed>'.encode()
            )
        return web.Response(body=hostile.replace(b"feed", b"Report"))

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings = make_settings(
        tmp_path, prefix, jma_feeds=[f"{base}/bad-feed.xml", f"{base}/feed.xml"], jma_areas=["350"]
    )
    polling = JmaReader(settings, redis)
    try:
        assert await polling.poll_once() == []
        assert requests == ["/bad-feed.xml", "/feed.xml", "/data/VXSE51.xml"]
        assert await polling.store.list() == []
        requests.clear()
        assert await polling.poll_once() == []  # a refused telegram is not fetched again
        assert "/data/VXSE51.xml" not in requests
    finally:
        await polling.close()
        await runner.cleanup()
