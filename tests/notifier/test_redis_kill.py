"""Redis SIGKILLed mid-fan-out (a real redis-server, append-only, fsync everysec) and started
again on the same port and data: every resident gets the notice exactly once on LINE, and the
notice is done only then. Once while the notice is being cut, once while it is being sent;
each also as a crash of the machine, where the writes of the last moment before the kill
(less than a second: what everysec may not have made durable) are lost with it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from notifier.config import Settings
from notifier.cutting import Cutter, plan
from notifier.keys import Keys
from notifier.runtime import Runtime
from notifier.streams import as_text
from tests.conftest import (
    delivering,
    finished,
    line_settings,
    make_settings,
    wait_for,
    whole_ward_notice,
)
from tests.fake_line import FakeLine
from tests.notifier.test_redis_restart import residents
from tests.redis_process import RedisProcess

RESIDENTS = 5000
USERS = {f"U{i:032x}" for i in range(RESIDENTS)}  # their LINE user ids
BATCHES = 10  # of 500
# translated: four languages rendered, four shares of the audience cut side by side
TRANSLATIONS = {
    lang: {"title": f"Bulky waste ({lang})", "body": "Collection days change in December."}
    for lang in ("en", "zh", "ko")
}

Check = Callable[[Runtime, str, FakeLine], Awaitable[bool]]


@pytest.fixture
def everysec_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis", fsync="everysec")
    server.start()
    yield server
    server.stop()


def received(fake: FakeLine) -> Counter[str]:
    """Each user id over every multicast the fake accepted (a 409 for a retry key it
    already took is not one: LINE delivers that request once)."""
    return Counter(user for multicast in fake.multicasts for user in multicast["to"])


async def being_cut(runtime: Runtime, notice_id: str, fake: FakeLine) -> bool:
    """The first batch is on the stream and the audience is still being cut."""
    async with runtime.redis.pipeline(transaction=False) as pipe:
        pipe.xlen(runtime.keys.delivery("line", "normal"))
        pipe.hget(runtime.keys.progress(notice_id), "line:cutting")
        batches, cutting = await pipe.execute()
    return bool(batches >= 1 and cutting == b"1")


def multicasts(n: int) -> Check:
    async def check(runtime: Runtime, notice_id: str, fake: FakeLine) -> bool:
        return len(fake.multicasts) >= n

    return check


def recorded(sent: int) -> Check:
    """The workers have recorded at least that many residents as sent."""

    async def check(runtime: Runtime, notice_id: str, fake: FakeLine) -> bool:
        found = await runtime.redis.hget(runtime.keys.progress(notice_id), "line:sent")
        return int(found or 0) >= sent

    return check


async def fan_out_through_a_kill(
    settings: Settings, server: RedisProcess, fake: FakeLine, kill_at: Check, keep_at: Check | None
) -> tuple[dict[str, Any], int]:
    """Send a whole-ward notice to every resident; SIGKILL Redis once ``kill_at`` holds
    (with ``keep_at``: a crash that loses every write since ``keep_at`` held) and start it
    again. The notice's view when it first reads done, and the multicasts before the kill."""
    runtime = Runtime.open(settings)
    await residents(runtime, RESIDENTS)
    async with delivering(settings, "line"):
        notice_id = await whole_ward_notice(runtime, settings, "line")

        def holds(check: Check) -> Callable[[], Awaitable[bool]]:
            return lambda: check(runtime, notice_id, fake)

        if keep_at is not None:
            await wait_for(holds(keep_at), timeout=20, interval=0.001)
            server.keep()  # in the loop: nothing writes while the files are copied
            kept = time.monotonic()
        await wait_for(holds(kill_at), timeout=20, interval=0.001)
        if keep_at is not None:
            await asyncio.to_thread(server.crash)
            assert time.monotonic() - kept < 1.0  # what everysec may lose: under a second
        else:
            await asyncio.to_thread(server.kill)
        before = len(fake.multicasts)
        await asyncio.to_thread(server.start)
        view = await finished(runtime, notice_id, timeout=60)
        await runtime.close()
    return view, before


def assert_once_each(fake: FakeLine, users: set[str], view: dict[str, Any]) -> None:
    got = received(fake)
    never = len(users - set(got))
    twice = sum(1 for user, n in got.items() if n > 1)
    strays = len(set(got) - users)
    assert (never, twice, strays) == (0, 0, 0), (
        f"of {len(users)} residents {never} never got it, {twice} got it more than once"
        f" ({strays} unknown ids); the notice: {view['status']}, {view['progress']}"
    )
    assert got == Counter(dict.fromkeys(users, 1))


def assert_everyone_once_then_done(fake: FakeLine, view: dict[str, Any]) -> None:
    assert_once_each(fake, USERS, view)
    assert view["status"] == "done"
    line = view["progress"]["line"]
    assert (line["recipients"], line["sent"], line["failed"], line["pending"]) == (
        RESIDENTS,
        RESIDENTS,
        0,
        0,
    )


def settings_for(
    tmp_path: Path, server: RedisProcess, fake: FakeLine, concurrency: int = 8
) -> Settings:
    # model_copy: NOTIFIER_REDIS_URL (scripts/test sets it) would win over an argument
    return line_settings(
        tmp_path, "kill:", fake.url, visibility_timeout=1.0, worker_concurrency=concurrency
    ).model_copy(update={"redis_url": server.url})


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lost", [False, True], ids=["sigkill", "last-second-lost"])
async def test_redis_killed_while_the_notice_is_cut_everyone_gets_it_once_then_done(
    tmp_path: Path, everysec_redis: RedisProcess, fake_line: FakeLine, lost: bool
) -> None:
    fake_line.response_delay = 0.2  # each batch is in flight for a while: the cut ends first
    settings = settings_for(tmp_path, everysec_redis, fake_line)
    if lost:  # durable: the cut's first batches; lost: the rest, eight of them sent to LINE
        kill_at, keep_at = multicasts(8), being_cut
    else:
        kill_at, keep_at = being_cut, None
    view, before = await fan_out_through_a_kill(
        settings, everysec_redis, fake_line, kill_at, keep_at
    )
    assert before < BATCHES
    assert_everyone_once_then_done(fake_line, view)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lost", [False, True], ids=["sigkill", "last-second-lost"])
async def test_redis_killed_while_the_notice_is_sent_everyone_gets_it_once_then_done(
    tmp_path: Path, everysec_redis: RedisProcess, fake_line: FakeLine, lost: bool
) -> None:
    fake_line.response_delay = 0.2  # two batches at a time: the fan-out takes a second
    settings = settings_for(tmp_path, everysec_redis, fake_line, concurrency=2)
    if lost:  # durable: two batches' records; lost: the next four's (sent again: 409)
        kill_at, keep_at = recorded(3000), recorded(1000)
    else:
        kill_at, keep_at = multicasts(4), None
    view, before = await fan_out_through_a_kill(
        settings, everysec_redis, fake_line, kill_at, keep_at
    )
    assert 0 < before < BATCHES
    assert_everyone_once_then_done(fake_line, view)


async def numbered(runtime: Runtime, stream: str) -> dict[int, tuple[str, list[str]]]:
    """The batches on ``stream``: number → (language, recipients). An entry is one JSON
    ``data`` field, or a field for each of its attributes."""
    found: dict[int, tuple[str, list[str]]] = {}
    for _, fields in cast("list[Any]", await runtime.redis.xrange(stream)):
        raw = {as_text(k): as_text(v) for k, v in fields.items()}
        job = json.loads(raw["data"]) if "data" in raw else raw
        recipients = job["recipients"]
        found[int(job["n"])] = (
            job["lang"],
            json.loads(recipients) if isinstance(recipients, str) else recipients,
        )
    return found


class KeptAfterTheFirstRound(Cutter):
    """The dispatcher's cut, with what Redis holds after the walk's first round (a batch of
    each share) kept as durable: a crash then loses the rest."""

    def __init__(self, redis: Redis, keys: Keys, server: RedisProcess) -> None:
        super().__init__(redis, keys)
        self.server, self.kept = server, False

    async def _call(self, *args: Any) -> None:
        most = args[-1]  # how many batches this call may cut: more than 1 after round one
        if most > 1 and not self.kept:  # the first round's calls are done
            self.server.keep()
            self.kept = True
        await super()._call(*args)


@pytest.mark.timeout(60)
async def test_a_cut_done_again_after_its_last_writes_were_lost_numbers_each_batch_the_same(
    tmp_path: Path, everysec_redis: RedisProcess
) -> None:
    """LINE's retry key is (notice, channel, batch number): a cut done again after a crash
    (or on a replica that missed the master's last writes) must give each number the very
    batch it had, or LINE answers 409 for the others and some get it twice."""
    settings = make_settings(tmp_path, "kill:").model_copy(update={"redis_url": everysec_redis.url})
    runtime = Runtime.open(settings)
    await runtime.subscribers.upgrade_index()  # walked from the by-channel-and-language sets
    await residents(runtime, 10_000)  # 2,000 in each language: four batches of 500
    k, stream = runtime.keys, runtime.keys.delivery("line", "normal")
    groups = {"ja": ["ja", "easy"], **{lang: [lang] for lang in TRANSLATIONS}}
    shares = await plan(runtime.redis, k, "n1", "line", groups, [], None, None, stream, 500)
    await runtime.redis.hset(k.progress("n1"), "line:cutting", 1)  # as the dispatcher plans
    await KeptAfterTheFirstRound(runtime.redis, k, everysec_redis).cut_all(
        "n1", "announcement", shares
    )
    first = await numbered(runtime, stream)  # what the workers read and sent to LINE
    await runtime.close()
    assert len(first) == 20

    await asyncio.to_thread(everysec_redis.crash)  # all but the first round lost
    await asyncio.to_thread(everysec_redis.start)
    await asyncio.to_thread(everysec_redis.wait_loaded)

    runtime = Runtime.open(settings)
    try:
        assert sorted(await numbered(runtime, stream)) == [0, 1, 2, 3]  # one batch a share
        await Cutter(runtime.redis, k).cut_all("n1", "announcement", shares)  # a takeover
        again = await numbered(runtime, stream)
    finally:
        await runtime.close()
    moved = sorted(n for n in first if again.get(n) != first[n])
    assert moved == [], f"batches given another number the second time: {moved}"


@pytest.mark.timeout(60)
async def test_redis_back_without_the_consumer_groups_the_service_makes_them_and_delivers(
    tmp_path: Path, everysec_redis: RedisProcess, fake_line: FakeLine
) -> None:
    """A crash in the service's first second loses the consumer groups it made at start
    (as does a Redis that comes back empty): the dispatcher and workers make them again."""
    settings = settings_for(tmp_path, everysec_redis, fake_line)
    runtime = Runtime.open(settings)
    users = {f"U{i:032x}" for i in range(300)}
    await residents(runtime, len(users))
    everysec_redis.keep()  # the residents are durable; the service's groups will not be
    kept = time.monotonic()
    async with delivering(settings, "line"):
        k = runtime.keys

        async def groups_made() -> bool:
            streams = [k.intake, k.delivery("line", "normal")]
            return all([await runtime.redis.exists(s) for s in streams]) and all(
                [await runtime.redis.xinfo_groups(s) for s in streams]
            )

        await wait_for(groups_made, timeout=5, interval=0.01)
        await asyncio.to_thread(everysec_redis.crash)
        assert time.monotonic() - kept < 1.0
        await asyncio.to_thread(everysec_redis.start)
        await asyncio.to_thread(everysec_redis.wait_loaded)
        notice_id = await whole_ward_notice(runtime, settings, "line")
        view = await finished(runtime, notice_id, timeout=10)  # it tries every second
        await runtime.close()
    assert_once_each(fake_line, users, view)
    assert view["status"] == "done" and view["progress"]["line"]["sent"] == len(users)
