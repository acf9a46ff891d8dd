"""The JSON API: announcements, rejected intake entries, subscribers."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import cast

from aiohttp import web
from pydantic import ValidationError

from notifier import channel_registry, intake
from notifier.logs import event, mask
from notifier.models import Invalid, field_errors
from notifier.store import STATUSES
from notifier.streams import Entry
from notifier.web.guard import audit, permit, require
from notifier.web.http import (
    RUNTIME,
    ApiError,
    idempotency_conflict,
    idempotency_key,
    json_response,
    mark_held,
    not_replicated,
    read_json,
)

log = logging.getLogger(__name__)


async def post_announcement(request: web.Request) -> web.Response:
    token = await require(request, "staff", "announcement.create")
    runtime = request.app[RUNTIME]
    data = await read_json(request)
    key = idempotency_key(request, token)
    try:
        notice = intake.validate(data, runtime.settings)
    except Invalid as e:
        raise ApiError(400, "invalid", "the announcement has errors", e.fields) from None
    once = (key, intake.body_digest(data)) if key else None
    accepted = await intake.enqueue(runtime.notices, notice, once)
    if accepted.conflict:
        raise idempotency_conflict()
    if accepted.replay is None:
        await audit(request, token, "announcement.create", accepted.id, accepted.status)
        event(log, "notice.accepted", notice=accepted.id, by=token.name, status=accepted.status)
    if not accepted.replicated:
        raise not_replicated("announcement", accepted.id)
    return json_response({"id": accepted.id, "status": accepted.status}, status=202)


async def list_announcements(request: web.Request) -> web.Response:
    await require(request, "staff", "announcement.list")
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(
            400, "invalid", "unknown status", {"status": f"one of {', '.join(STATUSES)}"}
        )
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise ApiError(400, "invalid", "bad limit", {"limit": "a whole number from 1 to 1000"})
    items = await request.app[RUNTIME].notices.list(status, limit)
    return json_response({"announcements": items})


async def get_announcement(request: web.Request) -> web.Response:
    await require(request, "staff", "announcement.read")
    settings = request.app[RUNTIME].settings
    found = await request.app[RUNTIME].notices.get(request.match_info["id"])
    if found is None:
        raise ApiError(404, "not_found", "no such announcement")
    mark_held(found, settings, datetime.now(UTC))
    return json_response(found)


async def cancel_announcement(request: web.Request) -> web.Response:
    token = await require(request, "staff", "announcement.cancel")
    notice_id = request.match_info["id"]
    result = await request.app[RUNTIME].notices.cancel(notice_id)
    await audit(request, token, "announcement.cancel", notice_id, result)
    if result == "missing":
        raise ApiError(404, "not_found", "no such announcement")
    if result != "ok":
        raise ApiError(409, "too_late", f"the announcement is {result} and can't be cancelled")
    event(log, "notice.cancelled", notice=notice_id, by=token.name)
    return json_response({"id": notice_id, "status": "cancelled"})


async def list_rejected(request: web.Request) -> web.Response:
    """Entries that other systems put on the intake stream and that failed validation."""
    await require(request, "staff", "intake.read")
    runtime = request.app[RUNTIME]
    rows = cast("list[Entry]", await runtime.redis.xrevrange(runtime.keys.rejected, count=100))
    items = []
    for entry_id, fields in rows:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        items.append(
            {
                "id": entry_id.decode(),
                "entry": f.get("entry"),
                "at": float(f.get("at", "0")),
                "reason": f.get("reason"),
                "notice": f.get("notice"),
            }
        )
    return json_response({"rejected": items})


async def post_subscriber(request: web.Request) -> web.Response:
    token = await require(request, "staff", "subscriber.save")
    data = await read_json(request)
    store = request.app[RUNTIME].subscribers
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "the body must be a JSON object")
    spec = channel_registry.REGISTRY.get(str(data.get("channel")))
    if (
        not spec or spec.address != "postal"
    ):  # staff register residents by post; the rest is admin's
        await permit(request, token, "admin", "subscriber.save")
    try:
        subscriber = store.validate(data)
    except ValidationError as e:
        raise ApiError(400, "invalid", "the subscriber has errors", field_errors(e)) from None
    ((subscriber_id, created),) = await store.save([subscriber])
    outcome = "created" if created else "updated"
    await audit(
        request, token, "subscriber.save", subscriber_id, outcome, channel=subscriber.channel
    )
    event(
        log,
        "subscriber.saved",
        subscriber=subscriber_id,
        channel=subscriber.channel,
        created=created,
        by=token.name,
    )
    return json_response(
        {"id": subscriber_id, "created": created, **_public(subscriber_id, subscriber.channel)},
        status=201 if created else 200,
    )


async def get_subscriber(request: web.Request) -> web.Response:
    await require(request, "admin", "subscriber.read")
    subscriber_id = request.match_info["id"]
    found = await request.app[RUNTIME].subscribers.get(subscriber_id)
    if found is None:
        raise ApiError(404, "not_found", "no such subscriber")
    return json_response(
        {
            **_public(subscriber_id, found.channel),
            "address": mask(found.address),
            "areas": found.areas,
            "topics": found.topics,
            "language": found.language,
        }
    )


async def delete_subscriber(request: web.Request) -> web.Response:
    token = await require(request, "admin", "subscriber.delete")
    subscriber_id = request.match_info["id"]
    deleted = await request.app[RUNTIME].subscribers.delete(subscriber_id)
    await audit(request, token, "subscriber.delete", subscriber_id, "ok" if deleted else "missing")
    if not deleted:
        raise ApiError(404, "not_found", "no such subscriber")
    event(log, "subscriber.deleted", subscriber=subscriber_id, by=token.name, at=time.time())
    return json_response({"id": subscriber_id, "deleted": True})


def _public(subscriber_id: str, channel: str) -> dict[str, str]:
    return {"id": subscriber_id, "channel": channel}


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/announcements", post_announcement)
    r.add_get("/api/announcements", list_announcements)
    r.add_get("/api/announcements/{id}", get_announcement)
    r.add_delete("/api/announcements/{id}", cancel_announcement)
    r.add_get("/api/intake/rejected", list_rejected)
    r.add_post("/api/subscribers", post_subscriber)
    r.add_get("/api/subscribers/{id}", get_subscriber)
    r.add_delete("/api/subscribers/{id}", delete_subscriber)
