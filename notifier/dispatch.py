"""The dispatcher: reads the intake stream, schedules or fans a notice out to channel streams.

For each notice: render once per (channel, language); plan each channel's audience as
walks over the subscriber index, one share per language (notifier/cutting.py); then, in
one transaction, write the plan, the progress counters, the status and the channels'
single batches (X, print). Then cut the audience into batches with a Lua script that
walks the index and adds each batch to the channel's stream as it goes, so workers start
on the first batch at once while the rest is being cut. Only then is the intake entry
acknowledged: a dispatcher that dies half-way leaves it pending, and the one that
reclaims it walks on from where the cut stands. Each id of the audience is cut into
exactly one batch. Every batch, single or cut, is a ``states.BatchEntry``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError
from redis.typing import EncodableT, FieldT

from channels import Channel, channel_class
from notifier import channel_registry, json_input
from notifier.config import Settings
from notifier.cutting import Cutter, Share, plan
from notifier.keys import ALL, LANES, Keys
from notifier.logs import event
from notifier.metrics import Metrics
from notifier.models import Alert, AnyNotice, field_errors, parse_notice
from notifier.render import Templates
from notifier.states import BatchEntry
from notifier.streams import (
    Fields,
    StreamReply,
    as_text,
    consumer_name,
    decode_fields,
    ensure_group,
    multi,
)
from notifier.subscribers import SubscriberStore

log = logging.getLogger("notifier.dispatch")

GROUP = "dispatch"
FINISHED = (b"cancelled", b"done", b"failed")  # nothing for the dispatcher to do
ID_NAMESPACE = uuid.UUID("6f1d3a52-4d0e-4a55-9d3c-2f7a0c0b7e11")


@dataclass
class Prepared:
    """One channel's share of a notice, before anything is written about it."""

    channel: str
    rendered: dict[str, dict[str, Any]]  # language → content
    recipients: int = 0  # of X and print; a subscriber channel counts as it is cut
    single: BatchEntry | None = None  # the one batch of X or print
    shares: list[Share] = field(default_factory=list)  # of a subscriber channel
    audience: int | None = None  # a subscriber channel's audience, counted when planned


def render_groups(
    cls: type[Channel], notice: AnyNotice, languages: list[str]
) -> dict[str, list[str]]:
    """The languages a channel renders the notice in, each with the readers' languages it
    serves (a language without a translation is served in Japanese)."""
    groups: dict[str, list[str]] = {}
    for wanted in languages:
        for lang in cls.languages(notice, {wanted}):
            groups.setdefault(lang, []).append(wanted)
    return groups


def lane(kind: str) -> str:
    return "urgent" if kind == "alert" else "normal"


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        keys: Keys,
        templates: Templates,
        subscribers: SubscriberStore,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.templates = templates
        self.subscribers = subscribers
        self.metrics = metrics
        self.consumer = consumer_name()
        self.cutter = Cutter(redis, keys)
        templates.load(*channel_registry.names())  # at start-up, not when an alert is waiting

    async def run(self, stop: asyncio.Event) -> None:
        """Read both intake streams at once: an alert never waits while a routine
        notice's audience is being cut."""
        await asyncio.gather(*(self._run_lane(self.keys.intake_lane(lane), stop) for lane in LANES))

    async def _run_lane(self, stream: str, stop: asyncio.Event) -> None:
        ready = False
        next_reclaim = 0.0
        while not stop.is_set():
            try:
                if not ready:
                    await ensure_group(self.redis, stream, GROUP)
                    ready = True
                if time.monotonic() >= next_reclaim:
                    await self.reclaim(stream)
                    next_reclaim = time.monotonic() + self.settings.visibility_timeout / 2
                replies = cast(
                    "StreamReply | None",
                    await self.redis.xreadgroup(
                        GROUP, self.consumer, {stream: ">"}, count=10, block=500
                    ),
                )
                for _stream, entries in replies or []:
                    for entry_id, fields in entries:
                        await self.handle(entry_id.decode(), fields, stream)
            except RedisError as e:  # nothing acknowledged: the entry waits in the stream
                event(log, "dispatch.redis_error", logging.WARNING, error=repr(e))
                ready = False  # a Redis back without its last writes may lack the group
                await asyncio.sleep(1.0)

    async def reclaim(self, stream: str | None = None) -> None:
        """Take over intake entries a dead dispatcher left unacknowledged."""
        stream = stream or self.keys.intake
        min_idle = int(self.settings.visibility_timeout * 1000)
        start = "0-0"
        while True:
            start_id, entries, *_ = await self.redis.xautoclaim(
                stream, GROUP, self.consumer, min_idle, start_id=start, count=50
            )
            for entry_id, fields in entries:
                if fields:
                    await self.handle(entry_id.decode(), fields, stream)
            start = start_id.decode() if isinstance(start_id, bytes) else start_id
            if start == "0-0" or not entries:
                return

    async def handle(
        self, entry_id: str, raw_fields: dict[bytes, bytes], stream: str | None = None
    ) -> None:
        entry = (stream or self.keys.intake, entry_id)
        fields = decode_fields(raw_fields)
        raw = fields.get("notice", "")
        try:
            data = json_input.loads(raw)
        except json_input.JsonError as e:
            await self.reject(entry, raw, f"not a JSON object: it {e}")
            return
        if not isinstance(data, dict):
            await self.reject(entry, raw, "not a JSON object: an announcement is an object")
            return
        try:
            notice = parse_notice(data, context={"ward": self.settings.ward, "now": None})
        except ValidationError as e:
            await self.reject(entry, raw, json.dumps(field_errors(e), ensure_ascii=False))
            return
        if isinstance(notice, Alert) and not await self._issued(notice):
            await self.reject(entry, raw, "alerts are issued through POST /api/alerts")
            return
        if notice.id is None:  # from another system: an id that a redelivery repeats
            notice.id = uuid.uuid5(ID_NAMESPACE, f"{entry[0]}/{entry_id}").hex
        if notice.received_at is None:
            notice.received_at = datetime.now(UTC)
        started = time.perf_counter()
        while True:
            try:
                await self._process(entry, notice)
                break
            except WatchError:
                continue  # the notice changed under us (cancelled?): look again
            except IdInUse:
                await self.reject(entry, raw, "id: already used by another notice")
                return
            except RedisError:
                raise
            except Exception as e:  # a fault of ours (a template?): fail it visibly, don't loop
                event(log, "dispatch.fault", logging.ERROR, notice=notice.id, error=repr(e))
                await self.reject(entry, raw, f"could not dispatch: {type(e).__name__}: {e}")
                await self.redis.hset(
                    self.keys.notice(notice.id),
                    mapping={"status": "failed", "error": repr(e), "updated": time.time()},
                )
                return
        self.metrics.dispatch_seconds.observe(time.perf_counter() - started)

    async def _issued(self, alert: Alert) -> bool:
        """Whether the emergency desk issued this alert (roles, approval and audit apply
        there): one written straight onto the intake stream is refused."""
        if alert.id is None:
            return False
        return await self.redis.hget(self.keys.notice(alert.id), "kind") == b"alert"

    async def _process(self, entry: tuple[str, str], notice: AnyNotice) -> None:
        assert notice.id is not None
        key = self.keys.notice(notice.id)
        record = cast("Fields", await self.redis.hgetall(key))
        if record and not _same_except_time(record, notice):
            raise IdInUse
        if record.get(b"status") in FINISHED:  # a redelivery: nothing left to do but ack
            await self._ack_only(entry, notice.id, as_text(record[b"status"]))
            return
        if record.get(b"status") == b"dispatching":  # a dispatcher died while cutting
            shares = await self.cutter.shares(notice.id)
            await self.cutter.cut_all(notice.id, notice.kind, shares)
            await self._ack_only(entry, notice.id, "dispatching")
            return
        now = datetime.now(UTC)
        # never before its time: a dispatcher whose clock is behind the scheduler's puts the
        # notice back, and the scheduler releases it again a second later
        when = notice.scheduled_for
        due = when is None or when <= now
        prepared = await self.prepare(notice) if due else []
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            status = await pipe.hget(key, "status")
            if status in FINISHED or status == b"dispatching":
                await self._ack_only(entry, notice.id, as_text(status))
                return
            multi(pipe)
            if not record:
                self._store(pipe, notice, "queued")
            if not due:
                assert when is not None
                pipe.hset(key, mapping={"status": "scheduled", "updated": time.time()})
                pipe.zadd(self.keys.scheduled, {notice.id: when.timestamp()})
                self._ack(pipe, entry)
                await pipe.execute()
                event(log, "notice.scheduled", notice=notice.id, at=when.isoformat())
                return
            self._queue(pipe, notice, prepared)
            await pipe.execute()
        event(log, "notice.dispatching", notice=notice.id, kind=notice.kind)
        shares = [share for p in prepared for share in p.shares]
        batches = await self.cutter.cut_all(notice.id, notice.kind, shares)
        await self._ack_only(entry, notice.id, "dispatched")
        event(log, "notice.dispatched", notice=notice.id, batches=batches)

    async def _ack_only(self, entry: tuple[str, str], notice_id: str, status: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            self._ack(pipe, entry)
            await pipe.execute()
        event(log, "notice.skip", notice=notice_id, status=status)

    def _store(self, pipe: Pipeline, notice: AnyNotice, status: str) -> None:
        assert notice.id is not None
        now = time.time()
        pipe.hset(
            self.keys.notice(notice.id),
            mapping={
                "notice": notice.model_dump_json(),
                "kind": notice.kind,
                "status": status,
                "created": now,
                "updated": now,
            },
        )
        pipe.zadd(self.keys.notices, {notice.id: now})

    def _queue(self, pipe: Pipeline, notice: AnyNotice, prepared: list[Prepared]) -> None:
        assert notice.id is not None
        k = self.keys
        for p in prepared:
            for lang, content in p.rendered.items():
                pipe.hset(k.rendered(notice.id), f"{p.channel}:{lang}", json.dumps(content))
            progress: dict[FieldT, EncodableT] = {
                f"{p.channel}:recipients": p.recipients,
                f"{p.channel}:sent": 0,
                f"{p.channel}:failed": 0,
                f"{p.channel}:pending": p.recipients,
            }
            if p.audience is not None:  # what the cut must come to (cutting.Cutter.check)
                progress[f"{p.channel}:audience"] = p.audience
            if p.shares:
                progress[f"{p.channel}:cutting"] = 1  # not done before every batch is cut
                self.cutter.record(pipe, notice.id, p.shares)
            pipe.hset(k.progress(notice.id), mapping=progress)
            if p.single is not None:
                # typed as redis-py takes a stream entry (a dict is invariant in its types)
                fields: dict[FieldT, EncodableT] = {k: v for k, v in p.single.to_fields().items()}
                pipe.xadd(k.delivery(p.channel, lane(notice.kind)), fields)
        if isinstance(notice, Alert) and notice.drill:
            drill = k.drill_audience(notice.id)
            pipe.delete(drill)
            if self.settings.alert_test_audience:
                pipe.zadd(drill, dict.fromkeys(self.settings.alert_test_audience, 0))
            pipe.expire(drill, 7 * 24 * 3600)
        waiting = any(p.recipients or p.shares for p in prepared)
        pipe.hset(
            k.notice(notice.id),
            mapping={"status": "dispatching" if waiting else "done", "updated": time.time()},
        )

    async def _drill_audience(self, channel: str, areas: list[str]) -> int:
        """How many of the test audience a drill for ``areas`` reaches on ``channel``."""
        ids = self.settings.alert_test_audience
        if not ids:
            return 0
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(k.by_channel(channel), ids)
            for key in [k.by_area(a) for a in [*areas, ALL]] if areas else []:
                pipe.zmscore(key, ids)
            on_channel, *in_areas = await pipe.execute()
        return sum(
            1
            for i in range(len(ids))
            if on_channel[i] is not None and (not areas or any(a[i] is not None for a in in_areas))
        )

    def _ack(self, pipe: Pipeline, entry: tuple[str, str]) -> None:
        stream, entry_id = entry
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)

    async def prepare(self, notice: AnyNotice) -> list[Prepared]:
        """Render every channel's content and put its audience in sets, by language."""
        assert notice.id is not None
        prepared = []
        languages = self.settings.ward.language_codes
        for name in notice.channels:
            cls = channel_class(name)
            groups = render_groups(cls, notice, languages)
            rendered = {lang: cls.compose(self.templates, notice, lang) for lang in sorted(groups)}
            p = Prepared(name, rendered)
            drill = isinstance(notice, Alert) and notice.drill
            if cls.spec.cut:
                every_topic = set(notice.topics) >= set(self.settings.ward.topic_codes)
                # alerts ignore topic choices; a notice on every topic needs no topic filter
                topics = None if isinstance(notice, Alert) or every_topic else notice.topics
                p.shares = await plan(
                    self.redis,
                    self.keys,
                    notice.id,
                    name,
                    groups,
                    notice.areas,
                    topics,
                    self.keys.drill_audience(notice.id) if drill else None,
                    self.keys.delivery(name, lane(notice.kind)),
                    cls.spec.batch(self.settings),
                )
                if drill:
                    p.audience = await self._drill_audience(name, notice.areas)
                else:
                    p.audience = await self.subscribers.audience_count(
                        name, notice.areas, topics, languages
                    )
            elif not cls.spec.reaches(drill):
                pass  # a drill is never posted for everyone to see
            else:
                areas = notice.areas or self.settings.ward.area_codes
                p.recipients = len(areas) if cls.audience == "areas" else 1
                p.single = BatchEntry(
                    notice=notice.id,
                    kind=notice.kind,
                    channel=name,
                    lang="ja",
                    n=0,
                    areas=tuple(sorted(areas)) if cls.audience == "areas" else (),
                    size=p.recipients,
                )
            prepared.append(p)
        return prepared

    async def reject(self, entry: tuple[str, str], raw: str, reason: str) -> None:
        """An invalid entry moves to the rejected stream with its reason: nothing is dropped."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.rejected,
                {"notice": raw, "reason": reason, "entry": entry[1], "at": time.time()},
            )
            self._ack(pipe, entry)
            await pipe.execute()
        event(log, "notice.rejected", logging.WARNING, entry=entry[1])


class IdInUse(Exception):
    """An entry names an id that belongs to a different notice."""


def _same_except_time(record: dict[bytes, bytes], notice: AnyNotice) -> bool:
    stored = json.loads(record[b"notice"])
    fresh = json.loads(notice.model_dump_json())
    stored.pop("received_at", None)
    fresh.pop("received_at", None)
    return bool(stored == fresh)
