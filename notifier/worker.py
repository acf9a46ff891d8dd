"""Channel workers: consume a channel's delivery streams, urgent lane first.

A batch's outcome is recorded and its entry acknowledged in one Lua script, so a
batch is counted once however often it is delivered to a worker. Entries a dead
worker left pending are reclaimed after the visibility timeout (XAUTOCLAIM);
retryable failures wait in a sorted set and go back on their stream when due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels import Channel
from channels.base import Batch, Outcome, Paused, PermanentError, Recipient, RetryableError
from notifier.config import Settings
from notifier.cutting import settle
from notifier.keys import LANES, Keys
from notifier.logs import event
from notifier.streams import Fields, StreamReply, as_text, consumer_name, ensure_group
from notifier.subscribers import SubscriberStore

log = logging.getLogger("notifier.worker")

GROUP = "deliver"

# KEYS: done set, progress, notice, stream, stats, failures, batch log, breaker
# ARGV: batch number, channel, sent, failed, size, group, entry id, now, batch log json,
#       failure json...
_RECORD = (
    """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  redis.call('XACK', KEYS[4], ARGV[6], ARGV[7])
  redis.call('XDEL', KEYS[4], ARGV[7])
  return 0
end
local ch = ARGV[2]
redis.call('DEL', KEYS[8])
redis.call('HINCRBY', KEYS[2], ch .. ':sent', ARGV[3])
redis.call('HINCRBY', KEYS[2], ch .. ':failed', ARGV[4])
redis.call('HINCRBY', KEYS[2], ch .. ':pending', 0 - tonumber(ARGV[5]))
redis.call('HINCRBY', KEYS[5], ch .. ':sent', ARGV[3])
redis.call('HINCRBY', KEYS[5], ch .. ':failed', ARGV[4])
redis.call('HSET', KEYS[7], ch .. ':' .. ARGV[1], ARGV[9])
for i = 10, #ARGV do redis.call('RPUSH', KEYS[6], ARGV[i]) end
if #ARGV >= 10 then redis.call('LTRIM', KEYS[6], -1000, -1) end
redis.call('XACK', KEYS[4], ARGV[6], ARGV[7])
redis.call('XDEL', KEYS[4], ARGV[7])
"""
    + settle("KEYS[2]", "KEYS[3]", "ARGV[8]")
    + """
return 1
"""
)

# KEYS: breaker.  ARGV: seconds to remember a failure.  Returns failures in a row.
_FAILED = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
"""

# KEYS: retries, stream.  ARGV: member, due, group, entry id
_DEFER = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[2], ARGV[4])
return 1
"""

# KEYS: retries.  ARGV: now
_RELEASE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local item = cjson.decode(member)
    redis.call('XADD', item.stream, '*', 'data', item.data)
  end
end
return #due
"""


def backoff(attempt: int, base: float, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311


class ChannelWorker:
    def __init__(
        self,
        channel: Channel,
        settings: Settings,
        redis: Redis,
        keys: Keys,
        subscribers: SubscriberStore,
        concurrency: int = 4,
    ) -> None:
        self.channel = channel
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.subscribers = subscribers
        self.concurrency = concurrency
        self.consumer = consumer_name()
        self.streams = [keys.delivery(channel.name, lane) for lane in LANES]
        self._record = redis.register_script(_RECORD)
        self._defer = redis.register_script(_DEFER)
        self._release = redis.register_script(_RELEASE)
        self._failed = redis.register_script(_FAILED)
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._content: dict[str, dict[str, Any]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, up to ``concurrency`` batches at a time in each
        lane: urgent batches have slots of their own, so an alert starts at once even
        while every routine slot is busy.

        A slot is refilled as soon as its batch is done; on stop, the batches in hand
        are finished; if the task is cancelled, they are cut off and stay pending.
        """
        inflight: dict[str, set[asyncio.Task[None]]] = {lane: set() for lane in LANES}
        ready = False
        next_reclaim = 0.0
        try:
            while not stop.is_set():
                try:
                    if not ready:
                        for stream in self.streams:
                            await ensure_group(self.redis, stream, GROUP)
                        ready = True
                    await self._release(keys=[self.keys.retries], args=[time.time()])
                    if time.monotonic() >= next_reclaim:
                        await self.reclaim()
                        next_reclaim = time.monotonic() + self.settings.visibility_timeout / 2
                    pause = await self.paused_for()
                    if pause:  # hold the batches (they stay pending) until the pause ends
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), timeout=min(pause, 1.0))
                        continue
                    free = {lane: self.concurrency - len(inflight[lane]) for lane in LANES}
                    work = await self.read(free["urgent"], free["normal"])
                    for stream, entry_id, fields in work:
                        lane = LANES[self.streams.index(stream)]
                        task = asyncio.create_task(self.handle(stream, entry_id, fields))
                        inflight[lane].add(task)
                        task.add_done_callback(inflight[lane].discard)
                    busy = inflight["urgent"] | inflight["normal"]
                    if not work and busy:  # wait for a slot, briefly: an alert is looked
                        # for again within 50 ms
                        await asyncio.wait(busy, timeout=0.05, return_when=FIRST_COMPLETED)
                except RedisError as e:  # nothing is acknowledged, so nothing is lost
                    event(
                        log,
                        "worker.redis_error",
                        logging.WARNING,
                        channel=self.channel.name,
                        error=repr(e),
                    )
                    await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            for tasks in inflight.values():
                for task in tasks:
                    task.cancel()
            raise
        finally:
            left = inflight["urgent"] | inflight["normal"]
            if left:
                await asyncio.gather(*left, return_exceptions=True)

    async def read(self, urgent: int, normal: int | None = None) -> list[tuple[str, str, Fields]]:
        """New entries: up to ``urgent`` of the urgent lane's if it has any, so an alert
        never shares a round with routine batches; else, with no urgent batch in hand,
        up to ``normal`` of either lane, waiting up to half a second. While an alert is
        being delivered, in the channel's quiet hours, or with no routine slot free, only
        the urgent lane is read: routine batches wait on their stream."""
        normal = urgent if normal is None else normal
        if urgent > 0:
            found = await self._read({self.streams[0]: ">"}, urgent, block=None)
            if found:
                return found
        alerting = urgent < self.concurrency  # urgent batches in hand: they have the rate
        quiet = self.settings.quiet_until(self.channel.name, self.now()) is not None
        if normal <= 0 or alerting:
            return []
        if quiet:
            return await self._read({self.streams[0]: ">"}, urgent, block=500)
        found = await self._read(dict.fromkeys(self.streams, ">"), normal, block=500)
        order = {stream: i for i, stream in enumerate(self.streams)}
        return sorted(found, key=lambda item: order[item[0]])

    async def step(self) -> None:
        """Read and deliver one round of entries, the urgent lane first."""
        work = await self.read(self.concurrency)
        await asyncio.gather(*(self.handle(*item) for item in work))

    async def reclaim(self) -> None:
        """Take over entries that a dead or stuck worker left unacknowledged."""
        min_idle = int(self.settings.visibility_timeout * 1000)
        for stream in self.streams:
            start = "0-0"
            while True:
                next_start, entries, *_ = await self.redis.xautoclaim(
                    stream, GROUP, self.consumer, min_idle, start_id=start, count=self.concurrency
                )
                live = [(eid.decode(), f) for eid, f in entries if f]
                if live:
                    event(log, "batch.reclaimed", channel=self.channel.name, entries=len(live))
                await asyncio.gather(*(self.handle(stream, eid, f) for eid, f in live))
                start = next_start.decode() if isinstance(next_start, bytes) else next_start
                if start == "0-0" or not entries:
                    break

    async def _read(
        self, streams: dict[str, str], count: int, block: int | None
    ) -> list[tuple[str, str, Fields]]:
        wanted = cast("dict[bytes | str | memoryview, int | bytes | str | memoryview]", streams)
        replies = cast(
            "StreamReply | None",
            await self.redis.xreadgroup(GROUP, self.consumer, wanted, count=count, block=block),
        )
        return [
            (as_text(stream), as_text(entry_id), fields)
            for stream, entries in replies or []
            for entry_id, fields in entries
        ]

    async def handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Deliver one entry; on a fault it stays pending and is reclaimed later."""
        try:
            await self._handle(stream, entry_id, fields)
        except Exception as e:  # Redis away too: the entry is reclaimed once it answers
            event(
                log,
                "batch.fault",
                logging.ERROR,
                channel=self.channel.name,
                entry=entry_id,
                error=repr(e),
            )

    async def _handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        job = json.loads(fields[b"data"])
        k = self.keys
        done_key = k.done_batches(job["notice"], job["channel"])
        if await self.redis.sismember(done_key, str(job["n"])):
            await self.redis.xack(stream, GROUP, entry_id)
            await self.redis.xdel(stream, entry_id)
            return
        batch, gone = await self._batch(job)
        try:
            outcome = await self.channel.send(batch) if batch.recipients or not gone else Outcome()
        except Paused as e:  # the channel can't send for now: keep the batch, spend no attempt
            await self._pause(e)
            await self._retry(stream, entry_id, job, e.defer, spend=False)
            return
        except PermanentError as e:
            outcome = self._all_failed(job, batch, e.message)
            outcome.meta.update(e.meta, error=e.message)
        except RetryableError as e:
            if e.spend and job["attempt"] >= self.settings.max_attempts:
                outcome = self._all_failed(job, batch, f"gave up after {job['attempt']}: {e}")
                outcome.meta.update(e.meta, error=e.message)
            else:
                if e.spend:
                    await self._trip(e)
                await self._retry(stream, entry_id, job, e.defer, spend=e.spend)
                return
        except Exception as e:  # an unknown fault is retried like a transient one
            event(log, "batch.error", logging.ERROR, channel=job["channel"], error=repr(e))
            if job["attempt"] >= self.settings.max_attempts:
                outcome = self._all_failed(job, batch, "gave up after an internal error")
            else:
                await self._retry(stream, entry_id, job, None)
                return
        outcome.failed.update(dict.fromkeys(gone, "unsubscribed"))
        failures = [
            json.dumps({"channel": job["channel"], "subscriber": sid, "reason": reason})
            for sid, reason in outcome.failed.items()
        ]
        entry = {
            "sent": outcome.sent,
            "failed": len(outcome.failed),
            "attempt": job["attempt"],
            "at": time.time(),
            **outcome.meta,
        }
        await self._record(
            keys=[
                done_key,
                k.progress(job["notice"]),
                k.notice(job["notice"]),
                stream,
                k.stats,
                k.failures(job["notice"]),
                k.batch_log(job["notice"]),
                k.breaker(job["channel"]),
            ],
            args=[
                job["n"],
                job["channel"],
                outcome.sent,
                len(outcome.failed),
                job["size"],
                GROUP,
                entry_id,
                time.time(),
                json.dumps(entry, ensure_ascii=False),
                *failures,
            ],
        )

    async def _trip(self, error: RetryableError) -> None:
        """Count a failed batch; enough in a row open the channel's circuit: it rests for
        ``breaker_seconds`` (its batches wait, the other channels go on), then tries again."""
        settings = self.settings
        window = int(settings.breaker_seconds * 10) + 1
        failures = int(
            await self._failed(keys=[self.keys.breaker(self.channel.name)], args=[window])
        )
        if failures >= settings.breaker_failures:
            reason = f"circuit open after {failures} failed batches in a row: {error.message}"
            await self._pause(Paused(reason, defer=settings.breaker_seconds))

    async def _pause(self, paused: Paused) -> None:
        key = self.keys.paused(self.channel.name)
        await self.redis.set(key, paused.message, px=max(1, int(paused.defer * 1000)))
        event(
            log,
            "channel.paused",
            logging.WARNING,
            channel=self.channel.name,
            reason=paused.message,
            seconds=paused.defer,
        )

    async def paused_for(self) -> float:
        """Seconds left of a pause of this channel (0 when it may send)."""
        ms = await self.redis.pttl(self.keys.paused(self.channel.name))
        return max(0.0, ms / 1000) if ms and ms > 0 else 0.0

    async def _batch(self, job: dict[str, Any]) -> tuple[Batch, list[str]]:
        """The batch with each recipient's current address; the ids no longer subscribed."""
        found = await self.subscribers.addresses(job["recipients"])
        gone = [sid for sid in job["recipients"] if sid not in found]
        recipients = tuple(Recipient(sid, *found[sid]) for sid in job["recipients"] if sid in found)
        return (
            Batch(
                notice_id=job["notice"],
                kind=job["kind"],
                channel=job["channel"],
                lang=job["lang"],
                number=job["n"],
                recipients=recipients,
                content=await self._rendered(job),
                areas=tuple(job["areas"]),
                attempt=job["attempt"],
            ),
            gone,
        )

    async def _rendered(self, job: dict[str, Any]) -> dict[str, Any]:
        field = f"{job['channel']}:{job['lang']}"
        cache_key = f"{job['notice']}:{field}"
        if cache_key not in self._content:
            if len(self._content) > 256:
                self._content.clear()
            raw = await self.redis.hget(self.keys.rendered(job["notice"]), field)
            if raw is None:
                raise PermanentError(f"no rendered content for {field}")
            self._content[cache_key] = json.loads(raw)
        return self._content[cache_key]

    @staticmethod
    def _all_failed(job: dict[str, Any], batch: Batch, reason: str) -> Outcome:
        if job["recipients"]:
            return Outcome(failed={r.id: reason for r in batch.recipients})
        return Outcome(failed={f"{job['channel']}#{i}": reason for i in range(job["size"])})

    async def _retry(
        self,
        stream: str,
        entry_id: str,
        job: dict[str, Any],
        defer: float | None,
        spend: bool = True,
    ) -> None:
        delay = (
            defer if defer is not None else backoff(job["attempt"], self.settings.retry_base_delay)
        )
        job = {**job, "attempt": job["attempt"] + (1 if spend else 0)}
        member = json.dumps({"stream": stream, "data": json.dumps(job)})
        await self._defer(
            keys=[self.keys.retries, stream], args=[member, time.time() + delay, GROUP, entry_id]
        )
        event(
            log,
            "batch.retry",
            channel=job["channel"],
            notice=job["notice"],
            batch=job["n"],
            attempt=job["attempt"],
            delay=round(delay, 2),
        )
