"""The emergency desk's API: alerts by JSON or CAP 1.2, updates, the all-clear, approval,
and the audit log."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from aiohttp import web

from notifier import cap
from notifier.alerts import AlertRefused, Issued, validate
from notifier.intake import body_digest
from notifier.logs import event
from notifier.models import Invalid
from notifier.tokens import Token
from notifier.web.guard import audit, require
from notifier.web.http import (
    RUNTIME,
    ApiError,
    idempotency_conflict,
    idempotency_key,
    json_response,
    not_replicated,
    read_json,
)

log = logging.getLogger(__name__)

CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")


def _drill(request: web.Request) -> bool:
    value = request.query.get("drill", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid", "bad drill", {"drill": "true or false"})
    return value in ("true", "1")


async def post_alert(request: web.Request) -> web.Response:
    token = await require(request, "emergency", "alert.issue")
    runtime = request.app[RUNTIME]
    desk = runtime.alerts
    try:
        if request.content_type in CAP_TYPES:
            issued = await _from_cap(request, token)
        else:
            data = await read_json(request)
            drill = _drill(request)
            key = idempotency_key(request, token)
            alert = validate(data, runtime.settings, drill=drill)
            once = (key, body_digest({"alert": data, "drill": drill})) if key else None
            issued = await desk.issue(alert, token.name, idempotency=once)
    except Invalid as e:
        await audit(request, token, "alert.issue", "-", "invalid")
        raise ApiError(400, "invalid", "the alert has errors", e.fields) from None
    except AlertRefused as e:
        await audit(request, token, "alert.issue", "-", e.code)
        raise ApiError(e.status, e.code, e.message) from None
    return await answer(request, token, "alert.issue", issued)


async def _from_cap(request: web.Request, token: Token) -> Issued:
    runtime = request.app[RUNTIME]
    settings, desk = runtime.settings, runtime.alerts
    raw = await request.read()
    key = idempotency_key(request, token)
    once = (key, hashlib.sha256(raw).hexdigest()) if key else None
    try:
        message = cap.parse(raw, settings.ward, settings.cap_max_bytes)
    except cap.CapError as e:
        await audit(request, token, "alert.issue", "-", "invalid_cap")
        raise ApiError(400, "invalid_cap", e.message, {e.element: e.message}) from None
    drill = message.alert.get("drill", False) or _drill(request)
    if message.msg_type == "Cancel":
        target = await desk.find_cap(message)
        words = {k: message.alert[k] for k in ("body",) if k in message.alert}
        return await desk.cancel(target, token.name, words, idempotency=once)
    data = {k: v for k, v in message.alert.items() if k != "drill"}
    if message.msg_type == "Update":
        data["supersedes"] = await desk.find_cap(message)
    try:
        alert = validate(data, settings, drill=drill)
    except Invalid as e:  # the CAP text breaks one of our limits: name the CAP element
        raise Invalid({f"alert/info/{k}": v for k, v in e.fields.items()}) from None
    return await desk.issue(alert, token.name, cap=message, idempotency=once)


async def answer(request: web.Request, token: Token, action: str, issued: Issued) -> web.Response:
    """202 once a replica holds the alert (under Sentinel); the same Idempotency-Key with
    another body is a 422; a repeat answers as the first time and is not audited again."""
    if issued.conflict:
        raise idempotency_conflict()
    if not issued.replay:
        await audit(request, token, action, issued.id, issued.status)
        event(log, action, alert=issued.id, by=token.name, status=issued.status)
    if not issued.replicated:
        raise not_replicated("alert", issued.id)
    return json_response({"id": issued.id, "status": issued.status}, status=202)


async def cancel_alert(request: web.Request) -> web.Response:
    token = await require(request, "emergency", "alert.cancel")
    alert_id = request.match_info["id"]
    data: dict[str, Any] = {}
    if request.can_read_body:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "the body must be a JSON object")
        unknown = set(body) - {"title", "body", "url", "translations"}
        if unknown:
            fields = dict.fromkeys(sorted(unknown), "not a field of an all-clear")
            raise ApiError(400, "invalid", "the all-clear has errors", fields)
        data = body
    key = idempotency_key(request, token)
    once = (key, body_digest({"cancels": alert_id, "all_clear": data})) if key else None
    try:
        issued = await request.app[RUNTIME].alerts.cancel(
            alert_id, token.name, data, idempotency=once
        )
    except Invalid as e:
        raise ApiError(400, "invalid", "the all-clear has errors", e.fields) from None
    except AlertRefused as e:
        await audit(request, token, "alert.cancel", alert_id, e.code)
        raise ApiError(e.status, e.code, e.message) from None
    if issued.conflict:
        raise idempotency_conflict()
    if issued.id == alert_id:  # withdrawn before approval: nothing went out
        await audit(request, token, "alert.withdraw", alert_id, "cancelled")
        return json_response({"id": alert_id, "status": "cancelled"})
    if not issued.replay:
        await audit(request, token, "alert.cancel", alert_id, issued.status, all_clear=issued.id)
        event(log, "alert.cancel", alert=alert_id, all_clear=issued.id, by=token.name)
    if not issued.replicated:
        raise not_replicated("all-clear", issued.id)
    return json_response({"id": issued.id, "status": issued.status, "cancels": alert_id}, 202)


async def approve_alert(request: web.Request) -> web.Response:
    token = await require(request, "emergency", "alert.approve")
    alert_id = request.match_info["id"]
    try:
        issued = await request.app[RUNTIME].alerts.approve(alert_id, token.name)
    except AlertRefused as e:
        await audit(request, token, "alert.approve", alert_id, e.code)
        raise ApiError(e.status, e.code, e.message) from None
    return await answer(request, token, "alert.approve", issued)


async def get_alert(request: web.Request) -> web.Response:
    await require(request, "staff", "alert.read")
    found = await request.app[RUNTIME].notices.get(request.match_info["id"])
    if found is None or found["kind"] != "alert":
        raise ApiError(404, "not_found", "no such alert")
    return json_response(found)


async def list_alerts(request: web.Request) -> web.Response:
    await require(request, "staff", "alert.list")
    items = await request.app[RUNTIME].notices.list(None, 1000)
    return json_response({"alerts": [i for i in items if i["kind"] == "alert"][:100]})


async def get_audit(request: web.Request) -> web.Response:
    await require(request, "admin", "audit.read")
    try:
        count = int(request.query.get("count", "100"))
    except ValueError:
        count = 0
    if not 1 <= count <= 1000:
        raise ApiError(400, "invalid", "bad count", {"count": "a whole number from 1 to 1000"})
    before = request.query.get("before", "+")
    if before != "+" and not stream_id(before):
        raise ApiError(400, "invalid", "bad before", {"before": "an entry id such as 1-0"})
    entries = await request.app[RUNTIME].audit.recent(count, before)
    return json_response({"audit": entries})


def stream_id(value: str) -> bool:
    """Whether ``value`` is a Redis stream entry id: two 64-bit numbers, ``<ms>-<seq>``."""
    found = re.fullmatch(r"(\d{1,20})-(\d{1,20})", value)
    return found is not None and all(int(part) < 2**64 for part in found.groups())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/alerts", post_alert)
    r.add_get("/api/alerts", list_alerts)
    r.add_get("/api/alerts/{id}", get_alert)
    r.add_post("/api/alerts/{id}/cancel", cancel_alert)
    r.add_post("/api/alerts/{id}/approve", approve_alert)
    r.add_get("/api/audit", get_audit)
