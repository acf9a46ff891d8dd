"""Channel workers: consume a channel's delivery streams, urgent lane first.

A batch's outcome is recorded and its entry acknowledged in one Lua script
(notifier/lua/record.lua), so a batch is counted once however often it is delivered to a
worker; the record waits for a replica (WAIT), and one that none confirmed in time is
logged. Entries a dead worker left pending are reclaimed after the visibility timeout
(XAUTOCLAIM); retryable failures wait in a sorted set and go back on their stream when due.
What a failed delivery comes to (fail, retry, pause) is :func:`decide`'s answer, a plain
function of the error, the attempt and the settings; the worker only applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeAlias, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels import Channel
from channels.base import Batch, Outcome, Paused, PermanentError, RetryableError
from notifier.config import Settings
from notifier.keys import LANES, Keys
from notifier.logs import event
from notifier.states import BatchEntry, Scripts
from notifier.streams import Fields, StreamReply, as_text, consumer_name, ensure_group
from notifier.subscribers import SubscriberStore

log = logging.getLogger("notifier.worker")

GROUP = "deliver"
URGENT_WAIT_MS = 50  # with an alert in hand, how long a read waits for its next batches


def backoff(attempt: int, base: float, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311


@dataclass(frozen=True)
class Failed:
    """Record the batch with every recipient failed for ``reason``; ``meta`` goes in its
    log line."""

    reason: str
    meta: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    """Put the batch back on its stream in ``delay`` seconds, as its next attempt if
    ``spend``; ``breaker``: the failure the channel's circuit breaker counts (None: it
    counts none)."""

    delay: float
    spend: bool = True
    breaker: str | None = None


@dataclass(frozen=True)
class Pause:
    """Pause the channel for ``seconds`` (``reason`` is shown in readiness and progress)
    and hold the batch as long, spending no attempt."""

    reason: str
    seconds: float


Decision: TypeAlias = Failed | Retry | Pause


def decide(error: Exception, attempt: int, settings: Settings) -> Decision:
    """What a batch's delivery that raised ``error`` on its ``attempt`` comes to.

    A pause holds the batch; a permanent error fails it; a retryable one retries it (in
    the seconds it asked for, else after a backoff) until ``max_attempts`` is spent,
    unless it spends no attempt (a quota waited for); any other fault is retried like a
    transient one, but not counted by the breaker."""
    if isinstance(error, Paused):
        return Pause(error.message, error.defer)
    if isinstance(error, PermanentError):
        return Failed(error.message, {**error.meta, "error": error.message})
    last = attempt >= settings.max_attempts
    if isinstance(error, RetryableError):
        if error.spend and last:
            meta = {**error.meta, "error": error.message}
            return Failed(f"gave up after {attempt}: {error}", meta)
        delay = backoff(attempt, settings.retry_base_delay) if error.defer is None else error.defer
        return Retry(delay, error.spend, error.message if error.spend else None)
    if last:
        return Failed("gave up after an internal error")
    return Retry(backoff(attempt, settings.retry_base_delay))


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
        self.scripts = Scripts(redis, settings.min_replicas, settings.redis_replica_timeout)
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._content: dict[str, dict[str, Any]] = {}
        # stream → the entries this worker is delivering: never taken over by its own
        # reclaim, and claimed afresh (``renew``) so that no other worker takes them while
        # they are in hand, however long their channel takes (an email batch waiting for
        # Redis to come back to record what it mailed)
        self._holding: dict[str, set[str]] = {stream: set() for stream in self.streams}

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, up to ``concurrency`` batches at a time in each
        lane: urgent batches have slots of their own, so an alert starts at once even
        while every routine slot is busy.

        A slot is refilled as soon as its batch is done; on stop, the batches in hand
        are finished; if the task is cancelled, they are cut off and stay pending.
        """
        inflight: dict[str, set[asyncio.Task[None]]] = {lane: set() for lane in LANES}
        ready = False
        next_reclaim = next_renew = 0.0
        try:
            while not stop.is_set():
                try:
                    if not ready:
                        for stream in self.streams:
                            await ensure_group(self.redis, stream, GROUP)
                        ready = True
                    if time.monotonic() >= next_renew:
                        await self.renew()
                        next_renew = time.monotonic() + self.settings.visibility_timeout / 4
                    await self.scripts.run(
                        "requeue", retries_key=self.keys.retries, now=time.time()
                    )
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
                    if not work and busy and not self._waits_on_alert(free["urgent"]):
                        # wait for a slot, briefly: an alert is looked for again within
                        # 50 ms (with an alert in hand, the read itself waited so)
                        await asyncio.wait(busy, timeout=0.05, return_when=FIRST_COMPLETED)
                except RedisError as e:  # nothing is acknowledged, so nothing is lost
                    event(
                        log,
                        "worker.redis_error",
                        logging.WARNING,
                        channel=self.channel.name,
                        error=repr(e),
                    )
                    ready = False  # a Redis back without its last writes may lack the groups
                    next_renew = 0.0  # the first thing once it answers: before another worker's
                    await asyncio.sleep(1.0)  # reclaim finds the batches in hand idle
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
        alerting = urgent < self.concurrency  # urgent batches in hand: they have the rate
        if urgent > 0:
            # with an alert in hand, its next batches are waited for (up to 50 ms) as its
            # cut makes them, so that none waits on a slot the worker does not look at
            block = URGENT_WAIT_MS if self._waits_on_alert(urgent) else None
            found = await self._read({self.streams[0]: ">"}, urgent, block=block)
            if found:
                return found
        quiet = self.settings.quiet_until(self.channel.name, self.now()) is not None
        if normal <= 0 or alerting:
            return []
        if quiet:
            return await self._read({self.streams[0]: ">"}, urgent, block=500)
        found = await self._read(dict.fromkeys(self.streams, ">"), normal, block=500)
        order = {stream: i for i, stream in enumerate(self.streams)}
        return sorted(found, key=lambda item: order[item[0]])

    def _waits_on_alert(self, urgent: int) -> bool:
        """Whether a read with ``urgent`` slots free waits on the urgent lane: some of an
        alert's batches are in hand and a slot is free for the next."""
        return 0 < urgent < self.concurrency

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
                holding = self._holding[stream]  # its own: still being delivered
                live = [
                    (eid.decode(), f) for eid, f in entries if f and eid.decode() not in holding
                ]
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

    async def renew(self) -> None:
        """Claim the entries in hand afresh (their idle time starts again), so another
        worker's reclaim leaves them alone while this one is alive and delivering."""
        for stream, held in self._holding.items():
            if held:
                await self.redis.xclaim(stream, GROUP, self.consumer, 0, list(held), justid=True)

    async def handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Deliver one entry; on a fault it stays pending and is reclaimed later."""
        held = self._holding.setdefault(stream, set())
        if entry_id in held:
            return  # being delivered already (a reclaim found it idle)
        held.add(entry_id)
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
        finally:
            held.discard(entry_id)

    async def _handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        entry = BatchEntry.from_fields(fields)
        done_key = self.keys.done_batches(entry.notice, entry.channel)
        if await self.redis.sismember(done_key, str(entry.n)):
            await self.redis.xack(stream, GROUP, entry_id)
            await self.redis.xdel(stream, entry_id)
            return
        batch, gone = await self._batch(entry)
        try:
            outcome = await self.channel.send(batch) if batch.recipients or not gone else Outcome()
        except Exception as e:
            if not isinstance(e, PermanentError | RetryableError):  # a fault of ours
                event(log, "batch.error", logging.ERROR, channel=entry.channel, error=repr(e))
            decision = decide(e, entry.attempt, self.settings)
            if not isinstance(decision, Failed):
                await self._hold(stream, entry_id, entry, decision)
                return
            outcome = self._all_failed(entry, batch, decision.reason)
            outcome.meta.update(decision.meta)
        outcome.failed.update(dict.fromkeys(gone, "unsubscribed"))
        await self._record(stream, entry_id, entry, outcome)

    async def _hold(
        self, stream: str, entry_id: str, entry: BatchEntry, hold: Retry | Pause
    ) -> None:
        """Apply a decision to try the batch again later."""
        if isinstance(hold, Pause):  # the channel can't send for now: keep the batch
            await self._pause(hold.reason, hold.seconds)
            await self._retry(stream, entry_id, entry, hold.seconds, spend=False)
            return
        if hold.breaker is not None:
            await self._trip(hold.breaker)
        await self._retry(stream, entry_id, entry, hold.delay, spend=hold.spend)

    async def _record(
        self, stream: str, entry_id: str, entry: BatchEntry, outcome: Outcome
    ) -> None:
        """Count the batch's outcome and acknowledge its entry (record.lua)."""
        k = self.keys
        failures = [
            json.dumps({"channel": entry.channel, "subscriber": sid, "reason": reason})
            for sid, reason in outcome.failed.items()
        ]
        logged = {
            "sent": outcome.sent,
            "failed": len(outcome.failed),
            "attempt": entry.attempt,
            "at": time.time(),
            **outcome.meta,
        }
        counted, replicated = await self.scripts.run_replicated(
            "record",
            done_key=k.done_batches(entry.notice, entry.channel),
            progress_key=k.progress(entry.notice),
            notice_key=k.notice(entry.notice),
            stream_key=stream,
            stats_key=k.stats,
            failures_key=k.failures(entry.notice),
            batch_log_key=k.batch_log(entry.notice),
            breaker_key=k.breaker(entry.channel),
            batch=entry.n,
            channel=entry.channel,
            sent=outcome.sent,
            failed=len(outcome.failed),
            size=entry.size,
            group=GROUP,
            entry_id=entry_id,
            now=time.time(),
            batch_log=json.dumps(logged, ensure_ascii=False),
            failures=failures,
        )
        if int(counted) < 0:
            # its cut was lost with Redis's last writes: cut again, it is delivered (LINE:
            # 409 for its retry key) and counted then
            warning = "batch.unknown"
        elif not replicated:  # recorded, but a failover now could lose the record
            warning = "batch.not_replicated"
        else:
            return
        event(
            log, warning, logging.WARNING, notice=entry.notice, channel=entry.channel, batch=entry.n
        )

    async def _trip(self, error: str) -> None:
        """Count a failed batch; enough in a row open the channel's circuit: it rests for
        ``breaker_seconds`` (its batches wait, the other channels go on), then tries again."""
        settings = self.settings
        window = int(settings.breaker_seconds * 10) + 1
        failures = int(
            await self.scripts.run(
                "breaker", breaker_key=self.keys.breaker(self.channel.name), seconds=window
            )
        )
        if failures >= settings.breaker_failures:
            reason = f"circuit open after {failures} failed batches in a row: {error}"
            await self._pause(reason, settings.breaker_seconds)

    async def _pause(self, reason: str, seconds: float) -> None:
        key = self.keys.paused(self.channel.name)
        await self.redis.set(key, reason, px=max(1, int(seconds * 1000)))
        event(
            log,
            "channel.paused",
            logging.WARNING,
            channel=self.channel.name,
            reason=reason,
            seconds=seconds,
        )

    async def paused_for(self) -> float:
        """Seconds left of a pause of this channel (0 when it may send)."""
        ms = await self.redis.pttl(self.keys.paused(self.channel.name))
        return max(0.0, ms / 1000) if ms and ms > 0 else 0.0

    async def _batch(self, entry: BatchEntry) -> tuple[Batch, list[str]]:
        """The batch with each recipient's current address; the ids no longer subscribed."""
        recipients, gone = await self.subscribers.recipients(list(entry.recipients))
        return (
            Batch(
                notice_id=entry.notice,
                kind=entry.kind,
                channel=entry.channel,
                lang=entry.lang,
                number=entry.n,
                recipients=recipients,
                content=await self._rendered(entry),
                areas=entry.areas,
                attempt=entry.attempt,
            ),
            gone,
        )

    async def _rendered(self, entry: BatchEntry) -> dict[str, Any]:
        field = f"{entry.channel}:{entry.lang}"
        cache_key = f"{entry.notice}:{field}"
        if cache_key not in self._content:
            if len(self._content) > 256:
                self._content.clear()
            raw = await self.redis.hget(self.keys.rendered(entry.notice), field)
            if raw is None:
                raise PermanentError(f"no rendered content for {field}")
            self._content[cache_key] = json.loads(raw)
        return self._content[cache_key]

    @staticmethod
    def _all_failed(entry: BatchEntry, batch: Batch, reason: str) -> Outcome:
        if entry.recipients:
            return Outcome(failed={r.id: reason for r in batch.recipients})
        return Outcome(failed={f"{entry.channel}#{i}": reason for i in range(entry.size)})

    async def _retry(
        self, stream: str, entry_id: str, entry: BatchEntry, delay: float, spend: bool
    ) -> None:
        entry = replace(entry, attempt=entry.attempt + (1 if spend else 0))
        await self.scripts.run(
            "retry",
            retries_key=self.keys.retries,
            stream_key=stream,
            member=entry.retry_member(stream),
            due=time.time() + delay,
            group=GROUP,
            entry_id=entry_id,
        )
        event(
            log,
            "batch.retry",
            channel=entry.channel,
            notice=entry.notice,
            batch=entry.n,
            attempt=entry.attempt,
            delay=round(delay, 2),
        )
