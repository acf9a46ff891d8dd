"""The console's emergency page (issue, confirm with the audience, update, all-clear,
approve) and its admin pages (subscriber counts, print registration, the audit log)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from notifier.alerts import AlertRefused, follow, validate
from notifier.channel_registry import REGISTRY
from notifier.logs import event
from notifier.models import Alert, Invalid, field_errors
from notifier.web import forms
from notifier.web.guard import audit
from notifier.web.http import RUNTIME, Refused, read_form
from notifier.web.pages import need, page
from notifier.web.session import Session
from notifier.web.views import notice_row

log = logging.getLogger(__name__)
EMERGENCY = "/console/emergency"
SEVERITIES = {"advisory": "注意", "warning": "警戒", "emergency": "緊急"}


async def emergency(request: web.Request) -> web.Response:
    session = await need(request, "emergency")
    values: dict[str, Any] = {"areas": [], "severity": "warning"}
    supersedes = request.query.get("supersedes")
    if supersedes:  # an update starts from the alert it replaces (a drill's is a drill)
        previous = await _replaced(request, session, supersedes)
        fields = ("title", "body", "severity", "level", "hazard", "url", "drill", "areas")
        values = {**previous.model_dump(include=set(fields)), "supersedes": supersedes}
    return await _desk(request, session, values, {}, 200)


async def _replaced(request: web.Request, session: Session, alert_id: str) -> Alert:
    """The active alert an update replaces; else the page says why not: 404 for no alert,
    409 for one no longer active (or not yet approved)."""
    runtime = request.app[RUNTIME]
    found = await runtime.notices.get(alert_id)
    if found is None or found["kind"] != "alert":
        raise Refused(page(request, "refused.html", session, 404, reason="missing"))
    state = found.get("state", "active")  # as AlertDesk reads a record without one
    if state != "active":
        raise Refused(page(request, "refused.html", session, 409, reason="inactive", state=state))
    return Alert.model_validate(found["notice"], context={"ward": runtime.settings.ward})


async def _desk(
    request: web.Request,
    session: Session,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int,
) -> web.Response:
    runtime = request.app[RUNTIME]
    stored = await runtime.notices.list(None, 200)
    now = datetime.now(UTC)
    alerts = [
        notice_row(a, runtime.settings, {}, now)
        for a in stored
        if a["kind"] == "alert" and a.get("state") in ("active", "pending")
    ]
    drafts = [d for d in await runtime.drafts.drafts.list(50) if d.state == "pending"]
    return page(
        request,
        "emergency.html",
        session,
        status,
        values=values,
        errors=errors,
        alerts=alerts,
        drafts=drafts,
        severities=SEVERITIES,
        done=request.query.get("done"),
    )


async def _alert(request: web.Request, session: Session) -> Alert:
    """The alert the form describes; else the desk again, with what to fix (400)."""
    runtime = request.app[RUNTIME]
    form = await read_form(request)
    data = forms.alert(form)
    try:
        return validate(data, runtime.settings, drill=form.get("drill") == "on")
    except Invalid as e:
        values = {**data, "drill": form.get("drill") == "on"}
        errors = forms.japanese(e.fields, runtime.settings, forms.DESK)
        raise Refused(await _desk(request, session, values, errors, 400)) from None


def _refused(request: web.Request, session: Session, e: AlertRefused) -> Refused:
    return Refused(
        page(request, "refused.html", session, e.status, reason="alert", message=e.message)
    )


async def confirm(request: web.Request) -> web.Response:
    """The step before sending: who will get it, channel by channel."""
    session = await need(request, "emergency")
    alert = await _alert(request, session)
    runtime = request.app[RUNTIME]
    if alert.references:  # shown as it will go out: to everyone the alert it updates reached
        follow(await _replaced(request, session, alert.references), alert)
    alert.shelters = await runtime.alerts.listed_shelters(alert)
    store, settings = runtime.subscribers, runtime.settings
    audience: dict[str, str] = {}
    for channel in alert.channels:  # by the channel's kind of audience, as dispatch goes
        spec = REGISTRY[channel]
        kind = spec.audience
        if not spec.reaches(alert.drill):  # a drill is never posted for everyone to see
            continue
        if kind == "areas":
            areas = len(alert.areas) or len(settings.ward.areas)
            audience[channel] = f"掲示用チラシ {areas}地域"
        elif kind == "public":
            audience[channel] = "公開の投稿（フォロワー全員）"
        elif alert.drill:  # drills reach the test audience only
            audience[channel] = f"訓練の送り先 {len(settings.alert_test_audience):,}人"
        else:
            audience[channel] = f"{await store.audience_size(channel, alert.areas):,}人"
    return page(
        request,
        "confirm.html",
        session,
        alert=alert,
        audience=audience,
        severities=SEVERITIES,
        area_names=[settings.ward.area(a).name for a in alert.areas] or ["区内全域"],
    )


async def issue(request: web.Request) -> web.Response:
    session = await need(request, "emergency")
    alert = await _alert(request, session)
    try:
        issued = await request.app[RUNTIME].alerts.issue(alert, session.who.name)
    except AlertRefused as e:
        await audit(request, session.who, "alert.issue", "-", e.code)
        raise _refused(request, session, e) from None
    await audit(request, session.who, "alert.issue", issued.id, issued.status)
    event(log, "alert.issue", alert=issued.id, by=session.who.name, status=issued.status)
    raise web.HTTPSeeOther(f"{EMERGENCY}?done={issued.status}")


async def call_off(request: web.Request) -> web.Response:
    """The all-clear (or, before approval, withdrawing the alert)."""
    session = await need(request, "emergency")
    alert_id = request.match_info["id"]
    try:
        issued = await request.app[RUNTIME].alerts.cancel(alert_id, session.who.name, {})
    except AlertRefused as e:
        await audit(request, session.who, "alert.cancel", alert_id, e.code)
        raise _refused(request, session, e) from None
    withdrawn = issued.id == alert_id  # nothing went out, so no all-clear either
    action = "alert.withdraw" if withdrawn else "alert.cancel"
    detail: dict[str, Any] = {} if withdrawn else {"all_clear": issued.id}
    await audit(request, session.who, action, alert_id, issued.status, **detail)
    event(log, action, alert=alert_id, by=session.who.name, **detail)
    if withdrawn:
        done = "withdrawn"
    elif issued.status == "pending_approval":  # the all-clear waits for a second person
        done = "pending_approval"
    else:
        done = "all-clear"
    raise web.HTTPSeeOther(f"{EMERGENCY}?done={done}")


async def approve(request: web.Request) -> web.Response:
    session = await need(request, "emergency")
    alert_id = request.match_info["id"]
    try:
        issued = await request.app[RUNTIME].alerts.approve(alert_id, session.who.name)
    except AlertRefused as e:
        await audit(request, session.who, "alert.approve", alert_id, e.code)
        raise _refused(request, session, e) from None
    await audit(request, session.who, "alert.approve", alert_id, issued.status)
    raise web.HTTPSeeOther(f"{EMERGENCY}?done={issued.status}")


async def approve_draft(request: web.Request) -> web.Response:
    """A JMA draft goes out as an alert (its update, its all-clear), as the API's does."""
    session = await need(request, "emergency")
    draft_id = request.match_info["id"]
    try:
        issued = await request.app[RUNTIME].drafts.approve(draft_id, session.who.name)
    except Invalid as e:
        await audit(request, session.who, "draft.approve", draft_id, "invalid")
        message = "、".join(e.fields.values())
        raise _refused(request, session, AlertRefused(400, "invalid", message)) from None
    except AlertRefused as e:
        await audit(request, session.who, "draft.approve", draft_id, e.code)
        raise _refused(request, session, e) from None
    if not issued.replay:
        await audit(request, session.who, "draft.approve", draft_id, "ok", alert=issued.id)
    raise web.HTTPSeeOther(f"{EMERGENCY}?done={issued.status}")


async def dismiss_draft(request: web.Request) -> web.Response:
    session = await need(request, "emergency")
    draft_id = request.match_info["id"]
    try:
        outcome = await request.app[RUNTIME].drafts.dismiss(draft_id)
    except AlertRefused as e:
        raise _refused(request, session, e) from None
    await audit(request, session.who, "draft.dismiss", draft_id, outcome)
    raise web.HTTPSeeOther(f"{EMERGENCY}?done=dismissed")


async def subscribers(request: web.Request) -> web.Response:
    session = await need(request, "admin")
    return await _subscribers(request, session, {}, {}, 200)


async def _subscribers(
    request: web.Request,
    session: Session,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int,
) -> web.Response:
    runtime = request.app[RUNTIME]
    counts = await runtime.subscribers.breakdown()
    ward = runtime.settings.ward
    labels = {
        "channel": ("配信先", {n: s.label for n, s in REGISTRY.items() if s.address}),
        "area": ("地域", {a.code: a.name for a in ward.areas}),
        "topic": ("分野", {t.code: t.name for t in ward.topics}),
        "language": ("言語", {lang.code: lang.name for lang in ward.languages}),
    }
    return page(
        request,
        "subscribers.html",
        session,
        status,
        counts=counts,
        labels=labels,
        values=values,
        errors=errors,
        done=request.query.get("done"),
    )


async def register_print(request: web.Request) -> web.Response:
    """An offline resident, registered at the counter for the printed digest by post."""
    session = await need(request, "admin")
    runtime = request.app[RUNTIME]
    form = await read_form(request)
    data: dict[str, object] = {
        "channel": "print",
        "name": forms.text(form, "name"),
        "address": " ".join(forms.text(form, "address").split()),  # one line, as stored
        "areas": forms.chosen(form, "areas"),
        "language": forms.text(form, "language") or "ja",
    }
    store = runtime.subscribers
    try:
        subscriber = store.validate(data)
    except ValidationError as e:
        errors = forms.japanese(field_errors(e), runtime.settings, forms.PRINT)
        return await _subscribers(request, session, data, errors, 400)
    ((subscriber_id, created),) = await store.save([subscriber])
    await audit(request, session.who, "subscriber.create", subscriber_id, "ok", channel="print")
    event(log, "subscriber.saved", subscriber=subscriber_id, channel="print", by=session.who.name)
    raise web.HTTPSeeOther(f"/console/subscribers?done={'created' if created else 'updated'}")


async def audit_log(request: web.Request) -> web.Response:
    session = await need(request, "admin")
    runtime = request.app[RUNTIME]
    entries = await runtime.audit.recent(200)
    shown = [{**entry, "when": datetime.fromtimestamp(entry["at"], UTC)} for entry in entries]
    return page(request, "audit.html", session, entries=shown)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(EMERGENCY, emergency)
    r.add_post(f"{EMERGENCY}/confirm", confirm)
    r.add_post(f"{EMERGENCY}/issue", issue)
    r.add_post("/console/alerts/{id}/cancel", call_off)
    r.add_post("/console/alerts/{id}/approve", approve)
    r.add_post("/console/drafts/{id}/approve", approve_draft)
    r.add_post("/console/drafts/{id}/dismiss", dismiss_draft)
    r.add_get("/console/subscribers", subscribers)
    r.add_post("/console/subscribers/print", register_print)
    r.add_get("/console/audit", audit_log)
