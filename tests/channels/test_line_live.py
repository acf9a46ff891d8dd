"""LINE for real: the SDK against the fake LINE server, through the whole pipeline.

Every request body the fake receives is checked against LINE's OpenAPI document and
LINE's limits; it keeps a per-user record of what was delivered.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.worker import GROUP
from tests.conftest import (
    Api,
    channel_progress,
    delivering,
    enqueued,
    finished,
    kill_worker_once,
    line_settings,
    take_over,
    wait_for,
    worker_env,
)
from tests.fake_line import FakeLine

ROOT = Path(__file__).resolve().parents[2]
USERS = [f"U{i:032x}" for i in range(5)]


async def subscribe(runtime: Runtime, users: list[str], **choices: Any) -> None:
    store = runtime.subscribers
    await store.save([store.validate({"channel": "line", "address": u, **choices}) for u in users])


async def post(runtime: Runtime, **fields: Any) -> str:
    return await enqueued(runtime, channels=["line"], **fields)


def received(fake: FakeLine) -> Counter[str]:
    return Counter({user: len(messages) for user, messages in fake.delivered.items()})


@pytest.fixture
def settings(tmp_path: Path, prefix: str, fake_line: FakeLine) -> Settings:
    return line_settings(tmp_path, prefix, fake_line.url, line_batch_size=2)


@pytest.fixture
async def running(settings: Settings) -> Any:
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["line"])
    await service.start()
    yield service
    await service.stop()


async def test_each_resident_gets_the_notice_once_in_their_language(
    runtime: Runtime, running: Service, fake_line: FakeLine
) -> None:
    nerima, oizumi_en, shakujii = "U" + "1" * 32, "U" + "2" * 32, "U" + "3" * 32
    events_only = "U" + "4" * 32
    await subscribe(runtime, [nerima], areas=["nerima"])
    await subscribe(runtime, [oizumi_en], areas=["oizumi"], language="en")
    await subscribe(runtime, [shakujii], areas=["shakujii"])
    await subscribe(runtime, [events_only], topics=["events"])
    notice_id = await post(
        runtime,
        areas=["nerima", "oizumi"],
        url="https://www.city.nerima.tokyo.jp/",
        translations={"en": {"title": "Bulky waste days change", "body": "From December."}},
    )
    result = await finished(runtime, notice_id)
    assert result["progress"]["line"] == channel_progress(2)
    assert received(fake_line) == Counter({nerima: 1, oizumi_en: 1})
    (japanese,) = fake_line.messages_for(nerima)
    (english,) = fake_line.messages_for(oizumi_en)
    assert japanese["type"] == "flex" and japanese["altText"].startswith("粗大ごみ")
    assert english["altText"].startswith("Bulky waste days change")
    # each batch's LINE request id is on record
    log = await runtime.redis.hgetall(runtime.keys.batch_log(notice_id))
    ids = {json.loads(v)["request_id"] for v in log.values()}
    assert ids == {m["request_id"] for m in fake_line.multicasts}


async def test_exactly_once_through_5xx_timeouts_and_429s(
    runtime: Runtime, running: Service, fake_line: FakeLine
) -> None:
    await subscribe(runtime, USERS)
    fake_line.fail(500, "timeout", 429, 503, "timeout", 502)
    notice_id = await post(runtime, areas=[])
    result = await finished(runtime, notice_id)
    assert result["progress"]["line"] == channel_progress(5)
    assert received(fake_line) == Counter(dict.fromkeys(USERS, 1))
    statuses = Counter(status for path, status in fake_line.responses if "multicast" in path)
    assert statuses[409] >= 1  # a retry of a batch LINE had taken was answered "already accepted"
    assert statuses[500] == statuses[503] == statuses[502] == statuses[429] == 1


async def test_lines_refusal_fails_the_batch_with_its_message_and_is_not_retried(
    runtime: Runtime, running: Service, fake_line: FakeLine
) -> None:
    await subscribe(runtime, USERS[:2])
    fake_line.fail(403)
    notice_id = await post(runtime, areas=[])
    result = await finished(runtime, notice_id)
    assert result["status"] == "failed"
    assert result["progress"]["line"]["failed"] == 2
    assert fake_line.delivered == {}
    assert sum(1 for path, _ in fake_line.responses if "multicast" in path) == 1
    failures = await runtime.redis.lrange(runtime.keys.failures(notice_id), 0, -1)
    assert all("LINE 403" in json.loads(f)["reason"] for f in failures)


async def test_the_monthly_limit_pauses_line_and_holds_the_batches(
    runtime: Runtime, running: Service, fake_line: FakeLine, settings: Settings
) -> None:
    await subscribe(runtime, USERS)
    fake_line.monthly_limit = True
    notice_id = await post(runtime, areas=[])

    async def paused() -> dict[str, Any] | None:
        found = await runtime.notices.get(notice_id)
        return found if found and "paused" in found["progress"]["line"] else None

    held = await wait_for(paused)
    assert "monthly limit" in held["progress"]["line"]["paused"]
    assert held["progress"]["line"]["pending"] == 5 and held["status"] == "dispatching"
    async with aiohttp.ClientSession() as session:
        api_only = Service(settings, parts=["api"])
        await api_only.start()
        try:
            status, ready = await Api(session, f"http://127.0.0.1:{api_only.port}").call(
                "GET", "/readyz"
            )
        finally:
            await api_only.stop()
    assert status == 200 and "monthly limit" in ready["paused"]["line"]
    tried = len(fake_line.responses)
    await asyncio.sleep(0.3)
    assert len(fake_line.responses) <= tried + 1  # paused: not hammering LINE
    fake_line.monthly_limit = False  # the quota is back (a new month, a bigger plan)
    result = await finished(runtime, notice_id)
    assert result["progress"]["line"]["sent"] == 5
    assert received(fake_line) == Counter(dict.fromkeys(USERS, 1))


async def test_a_worker_killed_mid_fan_out_and_restarted_delivers_each_user_once(
    runtime: Runtime, fake_line: FakeLine, settings: Settings, tmp_path: Path, prefix: str
) -> None:
    users = [f"U{i:032x}" for i in range(10)]  # five batches of two
    await subscribe(runtime, users)
    dispatcher = Service(settings, parts=["dispatch"])
    await dispatcher.start()
    try:
        notice_id = await post(runtime, areas=[])
        stream = runtime.keys.delivery("line", "normal")
        await wait_for(lambda: runtime.redis.xlen(stream))
    finally:
        await dispatcher.stop()
    # LINE takes the first two requests, but their answers never come back
    fake_line.fail("timeout", "timeout")
    env = worker_env(settings, NOTIFIER_LINE_TIMEOUT="60", NOTIFIER_WORKER_CONCURRENCY="2")
    await kill_worker_once("line", env, lambda: _count(fake_line.multicasts, 2))
    assert int((await runtime.redis.xpending(stream, GROUP))["pending"]) == 2
    result = await take_over(settings, "line", runtime, notice_id)
    assert result["progress"]["line"] == channel_progress(10)
    assert received(fake_line) == Counter(dict.fromkeys(users, 1))
    statuses = Counter(status for path, status in fake_line.responses if "multicast" in path)
    assert statuses[409] == 2


async def _count(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_the_shared_rate_limit_keeps_line_under_its_limit(
    tmp_path: Path, prefix: str, runtime: Runtime
) -> None:
    fake = FakeLine(rate=20)
    await fake.start()
    try:
        settings = line_settings(
            tmp_path,
            prefix,
            fake.url,
            line_batch_size=1,
            line_rate_limit=19.0,  # LINE's 20/s less 5 %, as the defaults keep headroom
            worker_concurrency=8,
        )
        users = [f"U{i:032x}" for i in range(30)]
        await subscribe(runtime, users)
        async with delivering(settings, "line"):
            notice_id = await post(runtime, areas=[])
            result = await finished(runtime, notice_id)
        assert result["progress"]["line"]["sent"] == 30
        assert all(status != 429 for _, status in fake.responses)
        times = sorted(m["at"] for m in fake.multicasts)
        assert times[-1] - times[0] >= 29 / 19 - 0.05  # evenly spaced: no burst
    finally:
        await fake.stop()
