"""Intake: check a notice as staff or a script sends it, and queue it once."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from notifier.config import Settings
from notifier.models import Announcement, AnyNotice, Invalid, field_errors
from notifier.store import Accepted, NoticeStore


def validate(data: Any, settings: Settings, now: datetime | None = None) -> Announcement:
    """Return the notice ready to queue, or raise Invalid naming every bad field."""
    if not isinstance(data, dict):
        raise Invalid({"body": "must be a JSON object"})
    assigned = {f: "is assigned by the service" for f in ("id", "received_at") if f in data}
    now = now or datetime.now(UTC)
    try:
        notice = Announcement.model_validate(data, context={"ward": settings.ward, "now": now})
    except ValidationError as e:
        raise Invalid({**field_errors(e), **assigned}) from None
    if assigned:
        raise Invalid(assigned)
    notice.id = secrets.token_hex(8)
    notice.received_at = now
    return notice


def body_digest(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a body the text rule will refuse (a lone surrogate) still has a digest
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


async def enqueue(
    store: NoticeStore,
    notice: AnyNotice,
    idempotency: tuple[str, str] | None = None,
) -> Accepted:
    assert notice.id is not None and notice.received_at is not None
    status = "scheduled" if notice.scheduled_for else "queued"
    return await store.accept(
        notice.id, notice.kind, notice.model_dump_json(), status, idempotency=idempotency
    )
