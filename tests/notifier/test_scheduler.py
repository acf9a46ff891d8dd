"""Scheduled notices: dispatched at their time, across restarts; cancelled before it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.scheduler import Scheduler
from notifier.service import Service
from tests.conftest import Api, announcement, delivering, wait_for


async def post(service: Service, token: str, **fields: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{service.port}")
        return await api.call("POST", "/api/announcements", token, announcement(**fields))


async def status_of(runtime: Runtime, notice_id: str) -> str:
    found = await runtime.notices.get(notice_id)
    assert found is not None
    return str(found["status"])


async def test_scheduled_notice_is_sent_at_its_time_even_after_a_restart(
    settings: Settings, runtime: Runtime, tokens: dict[str, str]
) -> None:
    publish_at = datetime.now(UTC) + timedelta(seconds=2.5)
    first = Service(settings)
    await first.start()
    try:
        status, body = await post(
            first, tokens["staff"], channels=["x"], publish_at=publish_at.isoformat()
        )
        assert status == 202 and body["status"] == "scheduled"
        await wait_for(lambda: runtime.redis.zscore(runtime.keys.scheduled, body["id"]))
    finally:
        await first.stop()
    # the service is down when the notice falls due
    await asyncio.sleep(max(0.0, (publish_at - datetime.now(UTC)).total_seconds()) + 0.5)
    assert await status_of(runtime, body["id"]) == "scheduled"
    assert not (settings.outbox_dir / "x").exists()

    second = Service(settings)
    await second.start()
    try:

        async def sent() -> bool:
            return await status_of(runtime, body["id"]) == "done"

        await wait_for(sent)
    finally:
        await second.stop()
    (post_file,) = (settings.outbox_dir / "x").glob("*.json")
    assert post_file.stat().st_mtime >= publish_at.timestamp()


async def test_a_notice_is_not_sent_before_its_time(
    service: Service, runtime: Runtime, settings: Settings, tokens: dict[str, str]
) -> None:
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    _, body = await post(
        service, tokens["staff"], channels=["x"], publish_at=publish_at.isoformat()
    )

    async def sent() -> bool:
        return await status_of(runtime, body["id"]) == "done"

    await wait_for(sent)
    (post_file,) = (settings.outbox_dir / "x").glob("*.json")
    assert post_file.stat().st_mtime >= publish_at.timestamp()


async def test_cancel_before_its_time_and_not_after_dispatch(
    service: Service, runtime: Runtime, settings: Settings, tokens: dict[str, str]
) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{service.port}")
        soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
        _, body = await api.call(
            "POST",
            "/api/announcements",
            tokens["staff"],
            announcement(channels=["x"], publish_at=soon),
        )
        status, cancelled = await api.call(
            "DELETE", f"/api/announcements/{body['id']}", tokens["staff"]
        )
        assert status == 200 and cancelled["status"] == "cancelled"
        status, again = await api.call(
            "DELETE", f"/api/announcements/{body['id']}", tokens["staff"]
        )
        assert status == 409 and "cancelled" in again["error"]["message"]

        _, now = await api.call(
            "POST", "/api/announcements", tokens["staff"], announcement(channels=["x"])
        )

        async def finished() -> bool:
            return await status_of(runtime, now["id"]) == "done"

        await wait_for(finished)
        status, late = await api.call("DELETE", f"/api/announcements/{now['id']}", tokens["staff"])
        assert status == 409 and late["error"]["code"] == "too_late"

    await asyncio.sleep(2.0)  # past the cancelled notice's time
    assert await status_of(runtime, body["id"]) == "cancelled"
    assert await runtime.redis.zcard(runtime.keys.scheduled) == 0
    files = list((settings.outbox_dir / "x").glob("*.json"))
    assert [f.stem for f in files] == [now["id"]]


async def test_a_queued_notice_cancelled_before_the_dispatcher_reads_it_is_not_sent(
    settings: Settings, runtime: Runtime, tokens: dict[str, str]
) -> None:
    api_only = Service(settings, parts=["api"])
    await api_only.start()
    try:
        _, body = await post(api_only, tokens["staff"], channels=["x"])
        assert await runtime.notices.cancel(body["id"]) == "ok"
    finally:
        await api_only.stop()
    async with delivering(settings):
        await wait_for(lambda: _intake_drained(runtime))
        await asyncio.sleep(0.3)
    assert await status_of(runtime, body["id"]) == "cancelled"
    assert not (settings.outbox_dir / "x").exists()


async def _intake_drained(runtime: Runtime) -> bool:
    return await runtime.redis.xlen(runtime.keys.intake) == 0


async def test_two_schedulers_release_a_notice_once(
    settings: Settings, runtime: Runtime, tokens: dict[str, str]
) -> None:
    api_only = Service(settings, parts=["api", "dispatch"])
    await api_only.start()
    try:
        when = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        _, body = await post(api_only, tokens["staff"], channels=["x"], publish_at=when)
        await wait_for(lambda: runtime.redis.zscore(runtime.keys.scheduled, body["id"]))
    finally:
        await api_only.stop()
    await asyncio.sleep(1.2)
    a, b = (
        Scheduler(settings, runtime.redis, runtime.keys),
        Scheduler(settings, runtime.redis, runtime.keys),
    )
    released = await asyncio.gather(a.release_due(), b.release_due())
    assert sorted(map(len, released)) == [0, 1]
    assert await runtime.redis.xlen(runtime.keys.intake) == 1
