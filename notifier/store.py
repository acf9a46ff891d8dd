"""Notices in Redis: records, statuses, per-channel progress, idempotency, cancellation.

Every change that must happen together is one Lua script (notifier/states.py) or one
MULTI/EXEC.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis

from notifier import channel_registry
from notifier.keys import Keys
from notifier.states import Scripts
from notifier.streams import as_text

STATUSES = ("pending_approval", "scheduled", "queued", "dispatching", "done", "failed", "cancelled")
IDEMPOTENCY_TTL = 24 * 3600
ALERT_FIELDS = ("alert", "references", "superseded_by", "requested_by", "approved_by")


@dataclass(frozen=True)
class Accepted:
    id: str
    status: str
    replay: dict[str, Any] | None = None  # the first answer, for a retried request
    conflict: bool = False  # same Idempotency-Key, different body
    replicated: bool = True  # False: fewer replicas than wanted confirmed it in time


class NoticeStore:
    def __init__(
        self, redis: Redis, keys: Keys, min_replicas: int = 0, replica_timeout: float = 0.5
    ) -> None:
        """``min_replicas``: how many replicas must hold an accepted notice (Redis WAIT,
        up to ``replica_timeout`` seconds) before it counts as accepted."""
        self.redis = redis
        self.keys = keys
        self.min_replicas, self.replica_timeout = min_replicas, replica_timeout
        self.scripts = Scripts(redis, min_replicas, replica_timeout)

    async def accept(
        self,
        notice_id: str,
        kind: str,
        notice_json: str,
        status: str,
        idempotency: tuple[str, str] | None = None,
    ) -> Accepted:
        """Store a new notice and put it on the intake stream, at most once per key.

        ``idempotency`` is (key digest, body digest).
        """
        k = self.keys
        key_digest, body_digest = idempotency or ("-", "")
        response = json.dumps({"id": notice_id, "status": status})
        previous, replicated = await self.scripts.run_replicated(
            "accept",
            idempotency_key=k.idempotency(key_digest),
            notice_key=k.notice(notice_id),
            notices_key=k.notices,
            intake_key=k.intake,
            id=notice_id,
            notice=notice_json,
            status=status,
            now=time.time(),
            body_hash=body_digest,
            ttl=IDEMPOTENCY_TTL,
            response=response,
            use_idempotency="1" if idempotency else "0",
            kind=kind,
        )
        if previous is None:
            return Accepted(notice_id, status, replicated=replicated)
        stored = json.loads(previous)
        first = json.loads(stored["response"])
        if stored["hash"] != body_digest:
            return Accepted(first["id"], first["status"], conflict=True, replicated=replicated)
        return Accepted(first["id"], first["status"], replay=first, replicated=replicated)

    async def cancel(self, notice_id: str) -> str:
        """'ok', 'missing' (also for an alert: the desk calls those off), or the status
        that forbids cancelling."""
        result = await self.scripts.run(
            "cancel",
            notice_key=self.keys.notice(notice_id),
            scheduled_key=self.keys.scheduled,
            now=time.time(),
            id=notice_id,
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def get(self, notice_id: str) -> dict[str, Any] | None:
        names = list(channel_registry.names())
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hgetall(self.keys.notice(notice_id))
            pipe.hgetall(self.keys.progress(notice_id))
            pipe.mget([self.keys.paused(name) for name in names])
            record, progress, reasons = await pipe.execute()
        if not record:
            return None
        view = self._view(notice_id, record, progress)
        for channel, reason in _paused(names, reasons).items():
            if channel in view["progress"] and view["progress"][channel]["pending"]:
                view["progress"][channel]["paused"] = reason
        return view

    async def paused(self) -> dict[str, str]:
        """Channels that hold their batches for now, with the reason."""
        names = list(channel_registry.names())
        return _paused(names, await self.redis.mget([self.keys.paused(n) for n in names]))

    async def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        members = cast("list[bytes]", await self.redis.zrevrange(self.keys.notices, 0, -1))
        ids = [i.decode() for i in members]
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            async with self.redis.pipeline(transaction=False) as pipe:
                for notice_id in chunk:
                    pipe.hgetall(self.keys.notice(notice_id))
                    pipe.hgetall(self.keys.progress(notice_id))
                rows = await pipe.execute()
            for i, notice_id in enumerate(chunk):
                record, progress = rows[2 * i], rows[2 * i + 1]
                if record and (status is None or record[b"status"].decode() == status):
                    found.append(self._view(notice_id, record, progress))
                    if len(found) >= limit:
                        return found
        return found

    @staticmethod
    def _view(
        notice_id: str, record: dict[bytes, bytes], progress: dict[bytes, bytes]
    ) -> dict[str, Any]:
        notice = json.loads(record[b"notice"])
        channels: dict[str, dict[str, int]] = {
            channel: {"recipients": 0, "sent": 0, "failed": 0, "pending": 0}
            for channel in notice.get("channels", [])
        }
        for field, value in progress.items():
            channel, _, counter = field.decode().partition(":")
            if counter == "cutting":  # its audience is still being cut into batches
                continue
            channels.setdefault(channel, {"recipients": 0, "sent": 0, "failed": 0, "pending": 0})
            channels[channel][counter] = int(value)
        view: dict[str, Any] = {
            "id": notice_id,
            "kind": record[b"kind"].decode(),
            "status": record[b"status"].decode(),
            "created": _iso(float(record[b"created"])),
            "updated": _iso(float(record[b"updated"])),
            "progress": channels,
            "notice": notice,
        }
        if b"error" in record:
            view["error"] = record[b"error"].decode()
        for name in ALERT_FIELDS:  # an alert's state, who asked, who approved, what follows
            found = record.get(name.encode())
            if found:
                view["state" if name == "alert" else name] = found.decode()
        return view


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _paused(names: list[str], reasons: list[bytes | str | None]) -> dict[str, str]:
    """The channels of ``names`` paused, with the reason (their keys' values, read)."""
    return {name: as_text(r) for name, r in zip(names, reasons, strict=True) if r}
