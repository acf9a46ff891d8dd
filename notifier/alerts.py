"""The emergency desk: issue, update, call off and approve alerts.

An alert's record keeps its state beside its delivery status: ``pending`` (waiting for a
second person), ``active``, ``superseded`` (an update replaced it), ``cancelled`` (the
all-clear went out), ``withdrawn`` (called off before approval); the update and the
all-clear are alerts of their own that reference it. Each change of state and the
queueing that goes with it is one Lua script, so two desks acting at once can't both
update one alert, and nothing is queued that the record does not show.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from notifier.cap import CapMessage
from notifier.config import Settings
from notifier.intake import Invalid
from notifier.keys import Keys
from notifier.models import Alert, field_errors
from notifier.streams import as_text

# fields the service sets, never the caller
ASSIGNED = ("id", "received_at", "type", "references", "drill", "kind")

# KEYS: notice, notices, urgent intake, referenced notice, cap message
# ARGV: id, notice json, status, now, referenced id ('' for none), its next state,
#       requested by, own state, cap ('1' to record)
_ISSUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
if ARGV[5] ~= '' then
  if redis.call('HGET', KEYS[4], 'kind') ~= 'alert' then return {'missing'} end
  local state = redis.call('HGET', KEYS[4], 'alert') or 'active'
  if state ~= 'active' then return {'state', state} end
end
redis.call('HSET', KEYS[1], 'notice', ARGV[2], 'kind', 'alert', 'status', ARGV[3],
           'created', ARGV[4], 'updated', ARGV[4], 'requested_by', ARGV[7],
           'references', ARGV[5], 'alert', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if ARGV[9] == '1' then redis.call('SET', KEYS[5], ARGV[1]) end
if ARGV[3] == 'pending_approval' then return {'ok'} end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], 'alert', ARGV[6], 'superseded_by', ARGV[1], 'updated', ARGV[4])
end
redis.call('XADD', KEYS[3], '*', 'notice', ARGV[2])
return {'ok'}
"""

# KEYS: notice, urgent intake, referenced notice.  ARGV: approver, now, referenced id, id
_APPROVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'pending_approval' then return status end
if redis.call('HGET', KEYS[1], 'requested_by') == ARGV[1] then return 'same_person' end
if (redis.call('HGET', KEYS[1], 'references') or '') ~= ARGV[3] then return 'retry' end
local notice = redis.call('HGET', KEYS[1], 'notice')
local own = 'active'
if ARGV[3] ~= '' then
  local state = redis.call('HGET', KEYS[3], 'alert') or 'active'
  if state ~= 'active' then return 'ref_' .. state end
  local next_state = 'superseded'
  if cjson.decode(notice)['type'] == 'cancel' then next_state = 'cancelled'; own = 'all-clear' end
  redis.call('HSET', KEYS[3], 'alert', next_state, 'superseded_by', ARGV[4], 'updated', ARGV[2])
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'alert', own, 'approved_by', ARGV[1],
           'updated', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'notice', notice)
return 'ok'
"""

# KEYS: notice.  ARGV: now
_WITHDRAW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending_approval' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'alert', 'withdrawn', 'updated', ARGV[1])
return 1
"""


class AlertRefused(Exception):
    """An action the alert's state does not allow; ``status`` is the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Issued:
    id: str
    status: str
    replay: bool = False


def validate(data: Any, settings: Settings, drill: bool = False) -> Alert:
    """An alert from the desk's JSON, or Invalid naming every bad field."""
    if not isinstance(data, dict):
        raise Invalid({"body": "must be a JSON object"})
    assigned = {f: "is assigned by the service" for f in ASSIGNED if f in data}
    if "drill" in data:
        assigned["drill"] = "use ?drill=true"
    try:
        alert = Alert.model_validate(
            {**data, "drill": drill}, context={"ward": settings.ward, "now": None}
        )
    except ValidationError as e:
        raise Invalid({**field_errors(e), **assigned}) from None
    if assigned:
        raise Invalid(assigned)
    return alert


class AlertDesk:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self._issue = redis.register_script(_ISSUE)
        self._approve = redis.register_script(_APPROVE)
        self._withdraw = redis.register_script(_WITHDRAW)

    async def referenced(self, alert_id: str) -> Alert:
        """The alert an update or all-clear follows: 404 unknown, 409 no longer active."""
        record = await self.redis.hmget(self.keys.notice(alert_id), "kind", "notice", "alert")
        kind, notice, state = record
        if kind != b"alert" or notice is None:
            raise AlertRefused(404, "not_found", "no such alert")
        if state not in (None, b"active"):
            raise AlertRefused(409, "not_active", f"the alert is {as_text(state)}")
        return Alert.model_validate_json(notice, context={"ward": self.settings.ward})

    async def issue(self, alert: Alert, by: str, cap: CapMessage | None = None) -> Issued:
        """Store and queue an alert (or hold it for approval); an update reaches everyone
        the alert it replaces reached, whatever areas it names."""
        if cap is not None:
            known = await self.redis.get(self.keys.cap_message(cap.sender, cap.identifier))
            if known is not None:  # the same CAP message again: the first answer
                status = await self.redis.hget(self.keys.notice(as_text(known)), "status")
                return Issued(as_text(known), as_text(status or b"queued"), replay=True)
        if alert.references:
            follow(await self.referenced(alert.references), alert)
        alert.id = secrets.token_hex(8)
        alert.received_at = datetime.now(UTC)
        pending = self.settings.alert_approval
        status = "pending_approval" if pending else "queued"
        own = "pending" if pending else ("all-clear" if alert.type == "cancel" else "active")
        ref_key = self.keys.notice(alert.references or alert.id)
        cap_key = self.keys.cap_message(cap.sender, cap.identifier) if cap else ref_key
        reply = await self._issue(
            keys=[
                self.keys.notice(alert.id),
                self.keys.notices,
                self.keys.intake_urgent,
                ref_key,
                cap_key,
            ],
            args=[
                alert.id,
                alert.model_dump_json(),
                status,
                time.time(),
                alert.references or "",
                "cancelled" if alert.type == "cancel" else "superseded",
                by,
                own,
                "1" if cap else "0",
            ],
        )
        outcome = [r.decode() if isinstance(r, bytes) else r for r in reply]
        if outcome[0] == "missing":
            raise AlertRefused(404, "not_found", "no such alert")
        if outcome[0] == "state":
            raise AlertRefused(409, "not_active", f"the alert is {outcome[1]}")
        if outcome[0] != "ok":
            raise AlertRefused(409, "conflict", "an alert with this id exists")
        return Issued(alert.id, status)

    async def cancel(self, alert_id: str, by: str, data: dict[str, Any] | None = None) -> Issued:
        """Send the all-clear of an active alert; an alert still waiting for approval is
        withdrawn instead (nothing went out, so nothing needs calling off)."""
        if await self._withdraw(keys=[self.keys.notice(alert_id)], args=[time.time()]):
            return Issued(alert_id, "cancelled")
        previous = await self.referenced(alert_id)
        data = data or {}
        try:
            alert = Alert.model_validate(
                {
                    "title": data.get("title", previous.title),
                    "body": data.get("body", _all_clear_text(previous)),
                    "severity": previous.severity,
                    "areas": previous.areas,
                    "url": data.get("url", previous.url),
                    "translations": data.get("translations", {}),
                    "channels": previous.channels,
                    "type": "cancel",
                    "references": alert_id,
                    "drill": previous.drill,
                },
                context={"ward": self.settings.ward, "now": None},
            )
        except ValidationError as e:
            raise Invalid(field_errors(e)) from None
        return await self.issue(alert, by)

    async def approve(self, alert_id: str, by: str) -> Issued:
        for _ in range(3):  # 'retry': the record changed between the two reads
            references = await self.redis.hget(self.keys.notice(alert_id), "references")
            ref = as_text(references or b"")
            result = await self._approve(
                keys=[
                    self.keys.notice(alert_id),
                    self.keys.intake_urgent,
                    self.keys.notice(ref or alert_id),
                ],
                args=[by, time.time(), ref, alert_id],
            )
            outcome = result.decode() if isinstance(result, bytes) else str(result)
            if outcome != "retry":
                break
        if outcome == "ok":
            return Issued(alert_id, "queued")
        if outcome == "missing":
            raise AlertRefused(404, "not_found", "no such alert")
        if outcome == "same_person":
            raise AlertRefused(
                403, "same_person", "a second member of the emergency desk must approve"
            )
        if outcome.startswith("ref_"):
            raise AlertRefused(
                409, "not_active", f"the alert it follows is {outcome.removeprefix('ref_')}"
            )
        raise AlertRefused(409, "not_pending", f"the alert is {outcome}, not waiting for approval")

    async def find_cap(self, cap: CapMessage) -> str:
        """Our alert for the newest of the CAP messages an Update or Cancel references."""
        for ref in reversed(cap.references):
            found = await self.redis.get(self.keys.cap_message(ref.sender, ref.identifier))
            if found is not None:
                return as_text(found)
        raise AlertRefused(404, "not_found", "alert/references: no alert here came from it")


def follow(previous: Alert, alert: Alert) -> None:
    """Make an update (or all-clear) reach everyone ``previous`` reached, and its own areas
    too (the whole ward if either is); a drill's update is a drill."""
    both = [*previous.areas, *alert.areas] if previous.areas and alert.areas else []
    alert.areas = list(dict.fromkeys(both))
    alert.drill = alert.drill or previous.drill


def _all_clear_text(previous: Alert) -> str:
    return f"先に発表した「{previous.title}」は解除されました。"
