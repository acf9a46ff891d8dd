"""The emergency desk: issue, update, call off and approve alerts.

An alert's record keeps its state beside its delivery status: ``pending`` (waiting for a
second person), ``active``, ``superseded`` (an update replaced it), ``cancelled`` (the
all-clear went out), ``withdrawn`` (called off before approval); the update and the
all-clear are alerts of their own that reference it. Each change of state and the
queueing that goes with it is one Lua script (notifier/states.py), so two desks acting at
once can't both update one alert, and nothing is queued that the record does not show;
an issue, approval or withdrawal counts as done once a replica holds it (WAIT), and an
issue is made at most once per idempotency key, as an announcement is.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from notifier.cap import CapMessage
from notifier.config import Settings
from notifier.keys import Keys
from notifier.models import Alert, Invalid, ListedShelter, field_errors
from notifier.shelters import ShelterStore
from notifier.states import Scripts
from notifier.store import IDEMPOTENCY_TTL
from notifier.streams import as_text

# fields the service sets, never the caller
ASSIGNED = ("id", "received_at", "type", "references", "drill", "kind", "history", "shelters")


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
    replay: bool = False  # the first answer, for a repeated request
    conflict: bool = False  # same idempotency key, different body
    replicated: bool = True  # False: fewer replicas than wanted confirmed it in time


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
        self.scripts = Scripts(redis, settings.min_replicas, settings.redis_replica_timeout)
        self.shelters = ShelterStore(redis, keys, settings.ward)

    async def referenced(self, alert_id: str, active: bool = True) -> Alert:
        """The alert an update or all-clear follows: 404 unknown, 409 no longer active
        (unless ``active`` is False: the issue script checks that itself)."""
        record = await self.redis.hmget(self.keys.notice(alert_id), "kind", "notice", "alert")
        kind, notice, state = record
        if kind != b"alert" or notice is None:
            raise AlertRefused(404, "not_found", "no such alert")
        if active and state not in (None, b"active"):
            raise AlertRefused(409, "not_active", f"the alert is {as_text(state)}")
        return Alert.model_validate_json(notice, context={"ward": self.settings.ward})

    async def listed_shelters(self, alert: Alert) -> list[ListedShelter]:
        """The open shelters of the alert's areas designated for its hazard, as it lists
        them (an all-clear lists none)."""
        if alert.type == "cancel":
            return []
        return [
            ListedShelter(name=s.name, address=s.address, map=s.map_url)
            for s in await self.shelters.open_for(alert.areas, alert.hazard)
        ]

    async def issue(
        self,
        alert: Alert,
        by: str,
        cap: CapMessage | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> Issued:
        """Store and queue an alert (or hold it for approval); an update reaches everyone
        the alert it replaces reached, whatever areas it names.

        ``idempotency`` is (key digest, body digest): a repeat with the same key gets the
        first answer (``replay``), or ``conflict`` if its body differs. A CAP message taken
        before gets its alert as it stands now (``replay``)."""
        if alert.references:  # whether it is still active: the script says, after the key
            follow(await self.referenced(alert.references, active=False), alert)
        alert.shelters = await self.listed_shelters(alert)  # what was open as it went
        alert.id = secrets.token_hex(8)
        alert.received_at = datetime.now(UTC)
        pending = self.settings.alert_approval
        status = "pending_approval" if pending else "queued"
        own = "pending" if pending else ("all-clear" if alert.type == "cancel" else "active")
        k = self.keys
        ref_key = k.notice(alert.references or alert.id)
        key_digest, body_digest = idempotency or ("-", "")
        reply, replicated = await self.scripts.run_replicated(
            "issue",
            notice_key=k.notice(alert.id),
            notices_key=k.notices,
            intake_key=k.intake_urgent,
            referenced_key=ref_key,
            cap_key=k.cap_message(cap.sender, cap.identifier) if cap else ref_key,
            idempotency_key=k.idempotency(key_digest),
            id=alert.id,
            notice=alert.model_dump_json(),
            status=status,
            now=time.time(),
            referenced=alert.references or "",
            referenced_next="cancelled" if alert.type == "cancel" else "superseded",
            requested_by=by,
            own_state=own,
            record_cap="1" if cap else "0",
            use_idempotency="1" if idempotency else "0",
            body_hash=body_digest,
            ttl=IDEMPOTENCY_TTL,
            response=json.dumps({"id": alert.id, "status": status}),
        )
        outcome = [as_text(r) for r in reply]
        if outcome[0] == "replay":
            stored = json.loads(outcome[1])
            first = json.loads(stored["response"])
            conflict = stored["hash"] != body_digest
            return Issued(
                first["id"],
                first["status"],
                replay=not conflict,
                conflict=conflict,
                replicated=replicated,
            )
        if outcome[0] == "cap":  # the same CAP message again: its alert, as it stands now
            known = await self.redis.hget(k.notice(outcome[1]), "status")
            return Issued(
                outcome[1], as_text(known or b"queued"), replay=True, replicated=replicated
            )
        if outcome[0] == "missing":
            raise AlertRefused(404, "not_found", "no such alert")
        if outcome[0] == "state":
            raise AlertRefused(409, "not_active", f"the alert is {outcome[1]}")
        if outcome[0] != "ok":
            raise AlertRefused(409, "conflict", "an alert with this id exists")
        return Issued(alert.id, status, replicated=replicated)

    async def cancel(
        self,
        alert_id: str,
        by: str,
        data: dict[str, Any] | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> Issued:
        """Send the all-clear of an active alert; an alert still waiting for approval is
        withdrawn instead (nothing went out, so nothing needs calling off).

        ``idempotency`` as for :meth:`issue`: a repeat gets the first all-clear's answer,
        though the alert is no longer active by then."""
        withdrawn, replicated = await self.scripts.run_replicated(
            "withdraw", notice_key=self.keys.notice(alert_id), now=time.time()
        )
        if withdrawn:
            return Issued(alert_id, "cancelled", replicated=replicated)
        previous = await self.referenced(alert_id, active=idempotency is None)
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
        return await self.issue(alert, by, idempotency=idempotency)

    async def approve(self, alert_id: str, by: str) -> Issued:
        for _ in range(3):  # 'retry': the record changed between the two reads
            references = await self.redis.hget(self.keys.notice(alert_id), "references")
            ref = as_text(references or b"")
            result, replicated = await self.scripts.run_replicated(
                "approve",
                notice_key=self.keys.notice(alert_id),
                intake_key=self.keys.intake_urgent,
                referenced_key=self.keys.notice(ref or alert_id),
                approver=by,
                now=time.time(),
                referenced=ref,
                id=alert_id,
            )
            outcome = result.decode() if isinstance(result, bytes) else str(result)
            if outcome != "retry":
                break
        if outcome == "ok":
            return Issued(alert_id, "queued", replicated=replicated)
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
    too (the whole ward if either is); a drill's update is a drill. It keeps the levels
    the alerts before it had (警戒レベル3 → 4 → 解除), and an update that names no level
    keeps the one it follows."""
    both = [*previous.areas, *alert.areas] if previous.areas and alert.areas else []
    alert.areas = list(dict.fromkeys(both))
    alert.drill = alert.drill or previous.drill
    alert.history = [*previous.history, previous.level] if previous.level else previous.history
    if alert.type == "update" and alert.level is None:
        alert.level = previous.level
    alert.hazard = alert.hazard or previous.hazard


def _all_clear_text(previous: Alert) -> str:
    return f"先に発表した「{previous.title}」は解除されました。"
