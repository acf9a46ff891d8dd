"""Channel workers: delivered at least once, counted once; retries; a dead worker's work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from channels.base import Batch, Context, Outcome, PermanentError, RetryableError
from channels.line import LineChannel
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.states import BatchEntry
from notifier.worker import GROUP, ChannelWorker
from tests.conftest import channel_progress, delivering, enqueued, make_settings, wait_for

ROOT = Path(__file__).resolve().parents[2]
USERS = [f"U{i:032x}" for i in range(5)]


async def queue_line_notice(settings: Settings, runtime: Runtime, **fields: Any) -> str:
    """Subscribe five LINE users and run the dispatcher alone until the batches are queued."""
    subs = [runtime.subscribers.validate({"channel": "line", "address": u}) for u in USERS]
    await runtime.subscribers.save(subs)
    notice_id = await enqueued(runtime, settings, channels=["line"], **fields)
    dispatcher = Service(settings, parts=["dispatch"])
    await dispatcher.start()
    try:

        async def queued() -> bool:
            found = await runtime.notices.get(notice_id)
            return bool(found and found["status"] == "dispatching")

        await wait_for(queued)
    finally:
        await dispatcher.stop()
    return notice_id


async def finished(runtime: Runtime, notice_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await runtime.notices.get(notice_id)
        return found if found and found["status"] in ("done", "failed") else None

    result: dict[str, Any] = await wait_for(check)
    return result


def delivered(settings: Settings) -> Counter[str]:
    """How often each LINE user id appears across the outbox's multicast requests."""
    seen: Counter[str] = Counter()
    for path in (settings.outbox_dir / "line").glob("*.json"):
        seen.update(json.loads(path.read_text())["to"])
    return seen


class Scripted(LineChannel):
    """A LINE channel that fails as told before writing to the outbox like the real one."""

    failures: list[Exception]
    calls: list[Batch]

    def __init__(self, context: Context, failures: list[Exception]) -> None:
        super().__init__(context)
        self.failures = failures
        self.calls = []

    async def _send(self, batch: Batch) -> Outcome:
        self.calls.append(batch)
        if self.failures:
            raise self.failures.pop(0)
        return await super()._send(batch)


async def run_worker(
    settings: Settings, runtime: Runtime, channel: LineChannel, notice_id: str
) -> dict[str, Any]:
    worker = ChannelWorker(channel, settings, runtime.redis, runtime.keys, runtime.subscribers)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        return await finished(runtime, notice_id)
    finally:
        stop.set()
        await task


def context(settings: Settings, runtime: Runtime) -> Context:
    return Context(settings, runtime.redis, runtime.keys, runtime.metrics)


async def test_a_worker_killed_mid_batch_is_taken_over_and_each_user_gets_it_once(
    tmp_path: Path, prefix: str
) -> None:
    settings = make_settings(tmp_path, prefix, line_batch_size=2, visibility_timeout=1.0)
    runtime = Runtime.open(settings)
    try:
        notice_id = await queue_line_notice(settings, runtime)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.hanging_worker",
            prefix,
            str(settings.outbox_dir),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 20) == b"sending\n"
        stream = runtime.keys.delivery("line", "normal")

        async def claimed() -> int:
            return int((await runtime.redis.xpending(stream, GROUP))["pending"])

        assert await wait_for(claimed) >= 1
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert await claimed() >= 1  # its batches are still pending, owned by the dead

        channel = Scripted(context(settings, runtime), [])
        result = await run_worker(settings, runtime, channel, notice_id)
        assert result["status"] == "done"
        assert result["progress"]["line"] == channel_progress(5)
        assert delivered(settings) == Counter(USERS)
        assert await claimed() == 0
    finally:
        await runtime.close()


async def test_a_batch_redelivered_after_its_outcome_was_recorded_is_not_counted_twice(
    settings: Settings, runtime: Runtime
) -> None:
    notice_id = await queue_line_notice(settings, runtime)
    channel = Scripted(context(settings, runtime), [])
    await run_worker(settings, runtime, channel, notice_id)
    # put the same batch on the stream again, as a crash before XACK would
    job = BatchEntry(notice_id, "announcement", "line", "ja", n=0, size=5, attempt=1)
    stream = runtime.keys.delivery("line", "normal")
    await runtime.redis.xadd(stream, job.to_fields())
    worker = ChannelWorker(channel, settings, runtime.redis, runtime.keys, runtime.subscribers)
    await worker.step()
    found = await runtime.notices.get(notice_id)
    assert found is not None
    assert found["progress"]["line"]["sent"] == 5
    assert len(channel.calls) == 1
    assert await runtime.redis.xlen(stream) == 0


async def test_retryable_errors_are_retried_with_backoff_then_delivered_once(
    settings: Settings, runtime: Runtime
) -> None:
    notice_id = await queue_line_notice(settings, runtime)
    channel = Scripted(
        context(settings, runtime),
        [RetryableError("503 from LINE"), RetryableError("timeout", defer=0.1)],
    )
    result = await run_worker(settings, runtime, channel, notice_id)
    assert result["progress"]["line"]["sent"] == 5
    assert [b.attempt for b in channel.calls] == [1, 2, 3]
    assert delivered(settings) == Counter(USERS)
    assert await runtime.redis.zcard(runtime.keys.retries) == 0


async def test_permanent_errors_fail_the_batch_with_the_reason(
    settings: Settings, runtime: Runtime
) -> None:
    notice_id = await queue_line_notice(settings, runtime)
    channel = Scripted(context(settings, runtime), [PermanentError("401 invalid token")])
    result = await run_worker(settings, runtime, channel, notice_id)
    assert result["status"] == "failed"
    assert result["progress"]["line"] == channel_progress(5, failed=5)
    assert len(channel.calls) == 1
    failures = [
        json.loads(f) for f in await runtime.redis.lrange(runtime.keys.failures(notice_id), 0, -1)
    ]
    assert {f["reason"] for f in failures} == {"401 invalid token"}
    assert not any(u in json.dumps(failures) for u in USERS)  # ids, not LINE user ids


async def test_a_batch_that_keeps_failing_gives_up_after_max_attempts(
    tmp_path: Path, prefix: str
) -> None:
    settings = make_settings(tmp_path, prefix, max_attempts=3, retry_base_delay=0.01)
    runtime = Runtime.open(settings)
    try:
        notice_id = await queue_line_notice(settings, runtime)
        channel = Scripted(context(settings, runtime), [RetryableError("5xx")] * 10)
        result = await run_worker(settings, runtime, channel, notice_id)
        assert result["status"] == "failed"
        assert len(channel.calls) == 3
    finally:
        await runtime.close()


async def test_the_urgent_lane_is_served_first(settings: Settings, runtime: Runtime) -> None:
    channel = Scripted(context(settings, runtime), [])
    worker = ChannelWorker(
        channel, settings, runtime.redis, runtime.keys, runtime.subscribers, concurrency=1
    )
    k = runtime.keys
    for lane in ("urgent", "normal"):
        await runtime.redis.xgroup_create(k.delivery("line", lane), GROUP, id="0", mkstream=True)
    for n, lane in enumerate(["normal", "normal", "urgent"]):
        job = BatchEntry(f"n{n}", "announcement", "line", "ja", n=0, size=0, attempt=1)
        await runtime.redis.hset(k.rendered(f"n{n}"), "line:ja", json.dumps({"messages": []}))
        await runtime.redis.xadd(k.delivery("line", lane), job.to_fields())
    for _ in range(3):
        await worker.step()
    assert [b.notice_id for b in channel.calls] == ["n2", "n0", "n1"]


@pytest.mark.parametrize("outage", [0.5])
async def test_workers_ride_out_a_lost_redis_connection(
    settings: Settings, runtime: Runtime, outage: float
) -> None:
    """Killing the worker's Redis connections loses nothing: it reconnects and delivers."""
    async with delivering(settings, "line"):
        name = f"notifier@{settings.redis_prefix.rstrip(':')}"
        clients = await runtime.redis.client_list()
        ours = [c["id"] for c in clients if c.get("name") == name]
        assert ours
        for client_id in ours:  # the service's connections, and no one else's
            await runtime.redis.client_kill_filter(_id=client_id)
        await asyncio.sleep(outage)
        notice_id = await queue_line_notice(settings, runtime)
        result = await finished(runtime, notice_id)
    assert result["progress"]["line"]["sent"] == 5


class Slow(LineChannel):
    """Takes ``delay`` seconds per batch, then writes to the outbox like the real one."""

    def __init__(self, context: Context, delay: float) -> None:
        super().__init__(context)
        self.delay = delay
        self.started = asyncio.Event()
        self.sends: list[int] = []  # the batch numbers it was handed

    async def _send(self, batch: Batch) -> Outcome:
        self.started.set()
        self.sends.append(batch.number)
        await asyncio.sleep(self.delay)
        return await super()._send(batch)


async def test_stopping_lets_the_batch_in_hand_finish(settings: Settings, runtime: Runtime) -> None:
    notice_id = await queue_line_notice(settings, runtime)
    channel = Slow(context(settings, runtime), delay=0.5)
    worker = ChannelWorker(channel, settings, runtime.redis, runtime.keys, runtime.subscribers)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(channel.started.wait(), 10)
    stop.set()  # as SIGTERM does: no new reads, but the batch in hand is finished
    await asyncio.wait_for(task, 10)
    found = await runtime.notices.get(notice_id)
    assert found is not None and found["status"] == "done"
    assert delivered(settings) == Counter(USERS)


async def test_a_batch_cut_off_at_shutdown_is_handed_back_and_delivered_later(
    tmp_path: Path, prefix: str
) -> None:
    settings = make_settings(tmp_path, prefix, visibility_timeout=0.5)
    runtime = Runtime.open(settings)
    try:
        notice_id = await queue_line_notice(settings, runtime)
        slow = Slow(context(settings, runtime), delay=30)
        worker = ChannelWorker(slow, settings, runtime.redis, runtime.keys, runtime.subscribers)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(slow.started.wait(), 10)
        task.cancel()  # as Service.stop does past its grace: the send is cut off
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not list((settings.outbox_dir / "line").glob("*.json"))
        result = await run_worker(
            settings, runtime, Scripted(context(settings, runtime), []), notice_id
        )
        assert result["progress"]["line"]["sent"] == 5
        assert delivered(settings) == Counter(USERS)
    finally:
        await runtime.close()


async def test_a_batch_slower_than_the_visibility_timeout_is_sent_once(
    tmp_path: Path, prefix: str
) -> None:
    """A batch in hand for three visibility timeouts (an email batch waiting for Redis to
    come back to record what it mailed) is neither taken over by its own worker's reclaim
    nor by another live worker's: the worker claims what it holds afresh."""
    settings = make_settings(tmp_path, prefix, visibility_timeout=1.0, line_batch_size=5)
    runtime = Runtime.open(settings)
    try:
        notice_id = await queue_line_notice(settings, runtime)
        slow = [Slow(context(settings, runtime), delay=3.0) for _ in range(2)]
        workers = [
            ChannelWorker(channel, settings, runtime.redis, runtime.keys, runtime.subscribers)
            for channel in slow
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        try:
            result = await finished(runtime, notice_id)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await runtime.close()
    assert result["progress"]["line"]["sent"] == 5
    assert delivered(settings) == Counter(USERS)
    assert sum(len(channel.sends) for channel in slow) == 1


class Held(LineChannel):
    """Holds every batch until ``release`` is set; ``handed`` names the batches it took."""

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.release = asyncio.Event()
        self.handed: list[str] = []

    async def _send(self, batch: Batch) -> Outcome:
        self.handed.append(batch.notice_id)
        await self.release.wait()
        return Outcome()


async def test_with_an_alert_in_hand_its_next_batch_is_taken_as_it_comes(
    settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While its alert's first batch is being sent, a worker waits on the urgent lane for
    the next (the cut makes them meanwhile): a batch that comes is taken at once, not
    when the wait ends; a routine batch waits for the alert."""
    monkeypatch.setattr("notifier.worker.URGENT_WAIT_MS", 5_000)
    channel = Held(context(settings, runtime))
    worker = ChannelWorker(
        channel, settings, runtime.redis, runtime.keys, runtime.subscribers, concurrency=4
    )
    k = runtime.keys
    for lane in ("urgent", "normal"):
        await runtime.redis.xgroup_create(k.delivery("line", lane), GROUP, id="0", mkstream=True)

    async def add(name: str, lane: str) -> None:
        job = BatchEntry(name, "alert", "line", "ja", n=0, size=0, attempt=1)
        await runtime.redis.hset(k.rendered(name), "line:ja", json.dumps({"messages": []}))
        await runtime.redis.xadd(k.delivery("line", lane), job.to_fields())

    stop = asyncio.Event()
    await add("a0", "urgent")
    task = asyncio.create_task(worker.run(stop))
    try:

        async def handed(n: int) -> bool:
            return len(channel.handed) >= n

        await wait_for(lambda: handed(1), timeout=10)
        await asyncio.sleep(0.2)  # the worker is now waiting on the urgent lane
        await add("routine", "normal")
        await add("a1", "urgent")
        await wait_for(lambda: handed(2), timeout=3)  # before the 5 s wait could end
        assert channel.handed == ["a0", "a1"]
        channel.release.set()
        await wait_for(lambda: handed(3), timeout=15)
        assert channel.handed == ["a0", "a1", "routine"]
    finally:
        stop.set()
        channel.release.set()
        await asyncio.wait_for(task, 15)
