"""Redis shut down and started again under the service (a real redis-server, append-only):
every resident gets the notice exactly once, and the notice is done only then."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from notifier.cutting import Cutter, plan
from notifier.runtime import Runtime
from notifier.states import BatchEntry
from tests.conftest import (
    delivering,
    finished,
    line_settings,
    make_settings,
    wait_for,
    whole_ward_notice,
)
from tests.fake_line import FakeLine
from tests.redis_process import RedisProcess

LANGUAGES = ["ja", "easy", "en", "zh", "ko"]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def residents(runtime: Runtime, n: int) -> set[str]:
    """n LINE residents across the languages; their subscriber ids."""
    store, ids = runtime.subscribers, set()
    for start in range(0, n, 1000):
        subs = [
            store.validate(
                {
                    "channel": "line",
                    "address": f"U{i:032x}",
                    "language": LANGUAGES[i % len(LANGUAGES)],
                }
            )
            for i in range(start, min(start + 1000, n))
        ]
        ids |= {sid for sid, _ in await store.save(subs)}
    return ids


async def cut_ids(runtime: Runtime, stream: str) -> Counter[str]:
    entries = cast("list[Any]", await runtime.redis.xrange(stream))
    return Counter(r for _, f in entries for r in BatchEntry.from_fields(f).recipients)


async def test_a_cut_walks_on_after_a_restart_and_cuts_everyone_once(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    # model_copy: NOTIFIER_REDIS_URL (scripts/test sets it) would win over an argument
    settings = make_settings(tmp_path, "restart:").model_copy(update={"redis_url": own_redis.url})
    runtime = Runtime.open(settings)
    everyone = await residents(runtime, 6000)
    k, stream = runtime.keys, runtime.keys.delivery("line", "normal")
    groups = {"ja": LANGUAGES}  # one share, walked over the channel's index
    shares = await plan(runtime.redis, k, "n1", "line", groups, [], None, None, stream, 100)
    await runtime.redis.hset(k.progress("n1"), "line:cutting", 1)  # as the dispatcher plans
    async with runtime.redis.pipeline(transaction=False) as pipe:  # one call: one page
        route = shares[0].route(again=False)
        await Cutter(runtime.redis, k)._call(pipe, "n1", "announcement", shares[0], route, 0, 1)
        await pipe.execute()
    assert 0 < sum((await cut_ids(runtime, stream)).values()) < 6000
    await runtime.close()

    await asyncio.to_thread(own_redis.restart)  # the index's hash tables are laid out anew

    runtime = Runtime.open(settings)
    try:
        await Cutter(runtime.redis, k).cut_all("n1", "announcement", shares)
        cut = await cut_ids(runtime, stream)
        assert set(cut) == everyone and set(cut.values()) == {1}
        progress = await runtime.redis.hgetall(k.progress("n1"))
        assert int(progress[b"line:recipients"]) == 6000
    finally:
        await runtime.close()


async def test_a_restart_while_a_notice_is_sent_reaches_everyone_once_and_then_done(
    tmp_path: Path, own_redis: RedisProcess, fake_line: FakeLine
) -> None:
    fake_line.response_delay = 0.2  # the fan-out takes a while: the restart lands inside it
    settings = line_settings(
        tmp_path, "restart:", fake_line.url, visibility_timeout=1.0
    ).model_copy(update={"redis_url": own_redis.url})
    runtime = Runtime.open(settings)
    everyone = await residents(runtime, 4000)
    async with delivering(settings, "line"):
        notice_id = await whole_ward_notice(runtime, settings, "line")

        async def sending() -> bool:
            return len(fake_line.multicasts) >= 1

        await wait_for(sending, timeout=20)
        await asyncio.to_thread(own_redis.restart)
        view = await finished(runtime, notice_id, timeout=60)
        await runtime.close()
    users = {f"U{i:032x}" for i in range(4000)}
    got = Counter({u: len(m) for u, m in fake_line.delivered.items()})
    assert set(got) == users and set(got.values()) == {1}
    assert view["status"] == "done"
    line = view["progress"]["line"]
    assert (line["recipients"], line["sent"], line["failed"]) == (len(everyone), 4000, 0)
