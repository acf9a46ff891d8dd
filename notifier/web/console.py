"""The staff console: sign-in, the notices and their progress, compose with previews.

Pages are Jinja2 (templates/console/), forms work without JavaScript; a small script
(console.js) adds live previews and progress bars that move. Every page checks the
session's role; every form carries the session's CSRF token.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from channels import channel_class
from channels.email import OWN_MARK
from channels.x_text import LIMIT, weight
from notifier import channel_registry, intake
from notifier.i18n import HTML_LANG
from notifier.logs import event
from notifier.models import Invalid
from notifier.render import TEMPLATES_DIR
from notifier.tokens import Token, digest
from notifier.web import forms
from notifier.web.guard import audit, over
from notifier.web.http import RUNTIME, Refused, json_response, read_form
from notifier.web.pages import need, page
from notifier.web.session import csrf_ok, end, keep_signin_csrf, signin_csrf, start
from notifier.web.views import NoticeRow, notice_row

log = logging.getLogger(__name__)
HOME = "/console/notices"
SIGNIN_WINDOW = 300  # seconds: NOTIFIER_SIGNIN_RATE_PER_IP attempts per client address
ANONYMOUS = Token("anonymous", "-", 0.0)


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(HOME)


async def signin_form(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    token = await signin_csrf(request, runtime)
    response = page(
        request, "signin.html", None, signin_csrf=token, next=_next(request), error=None
    )
    await keep_signin_csrf(runtime, response, token)
    return response


async def signin(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    form = await read_form(request)
    expected = await signin_csrf(request, runtime)
    if not csrf_ok(expected, form.get("csrf")) or request.cookies.get("notifier_signin") is None:
        raise Refused(page(request, "refused.html", None, 403, reason="csrf"))
    client = request.remote or "unknown"
    limit = runtime.settings.signin_rate_per_ip
    wait = await over(runtime, f"signin:ip:{client}", limit, SIGNIN_WINDOW)
    if wait:
        await audit(request, ANONYMOUS, "console.signin", "-", "rate_limited")
        response = page(
            request,
            "signin.html",
            None,
            429,
            signin_csrf=expected,
            next=_next(request),
            error="試行が多すぎます。しばらくしてからもう一度お試しください。",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    who, proof, target = None, "", "token"
    token = forms.text(form, "token")
    if token:
        who, proof = await runtime.tokens.check(token), digest(token)
    else:
        name = forms.text(form, "name")
        target = f"account:{name}"[:80]
        who = await runtime.accounts.check(name, str(form.get("password", "")))
    if who is None:
        await audit(request, ANONYMOUS, "console.signin", target, "refused")
        event(log, "console.signin_refused", client=client)
        return page(
            request,
            "signin.html",
            None,
            401,
            signin_csrf=expected,
            next=_next(request),
            error="名前とパスワード、またはトークンが違います。",
        )
    response = web.HTTPSeeOther(_next(request))
    await start(runtime, response, who, proof)
    await audit(request, who, "console.signin", who.name, "ok")
    event(log, "console.signin", by=who.name)
    raise response


def _next(request: web.Request) -> str:
    """Where to go after signing in: a console page, never another site."""
    value = request.query.get("next", HOME)
    ok = value.startswith("/console/") and not value.startswith("//") and "\\" not in value
    return value if ok else HOME


async def signout(request: web.Request) -> web.Response:
    session = await need(request, None)
    runtime = request.app[RUNTIME]
    response = web.HTTPSeeOther("/console/signin")
    await end(runtime, session, response)
    await audit(request, session.who, "console.signout", session.who.name, "ok")
    raise response


async def notices(request: web.Request) -> web.Response:
    session = await need(request, "staff")
    items = await _listed(request)
    done = request.query.get("done")
    return page(request, "notices.html", session, notices=items, done=done)


async def progress(request: web.Request) -> web.Response:
    """The notices' status and per-channel counts, for the list's progress bars."""
    await need(request, "staff")
    items = await _listed(request)
    return json_response(
        {
            "notices": [
                {
                    "id": n.id,
                    "status": n.status,
                    "progress": {c: asdict(p) for c, p in n.progress.items()},
                }
                for n in items
            ]
        }
    )


async def _listed(request: web.Request) -> list[NoticeRow]:
    """The latest notices, as the list shows them (notifier/web/views.py)."""
    runtime = request.app[RUNTIME]
    views = await runtime.notices.list(None, 100)
    paused, now = await runtime.notices.paused(), datetime.now(UTC)
    return [notice_row(v, runtime.settings, paused, now) for v in views]


async def cancel(request: web.Request) -> web.Response:
    session = await need(request, "staff")
    runtime = request.app[RUNTIME]
    notice_id = request.match_info["id"]
    result = await runtime.notices.cancel(notice_id)
    await audit(request, session.who, "announcement.cancel", notice_id, result)
    if result == "missing":
        raise Refused(page(request, "refused.html", session, 404, reason="missing"))
    if result != "ok":
        raise Refused(page(request, "refused.html", session, 409, reason="too_late", state=result))
    event(log, "notice.cancelled", notice=notice_id, by=session.who.name)
    raise web.HTTPSeeOther(f"{HOME}?done=cancelled")


async def compose_form(request: web.Request) -> web.Response:
    session = await need(request, "staff")
    values = {"channels": list(channel_registry.names()), "topics": [], "areas": []}
    return page(request, "compose.html", session, values=values, errors={})


async def compose(request: web.Request) -> web.Response:
    session = await need(request, "staff")
    runtime = request.app[RUNTIME]
    form = await read_form(request)
    data = forms.announcement(form, runtime.settings)
    try:
        notice = intake.validate(data, runtime.settings)
    except Invalid as e:
        errors = forms.japanese(e.fields, runtime.settings, forms.COMPOSE)
        return page(request, "compose.html", session, 400, values=_values(form), errors=errors)
    accepted = await intake.enqueue(runtime.notices, notice)
    await audit(request, session.who, "announcement.create", accepted.id, accepted.status)
    event(log, "notice.accepted", notice=accepted.id, by=session.who.name, status=accepted.status)
    raise web.HTTPSeeOther(f"{HOME}?done={accepted.status}")


async def preview(request: web.Request) -> web.Response:
    """The compose form as it stands: each channel's preview, or what is wrong, by field."""
    await need(request, "staff")
    runtime = request.app[RUNTIME]
    data = forms.announcement(await read_form(request), runtime.settings)
    try:
        notice = intake.validate(data, runtime.settings)
    except Invalid as e:
        return json_response(
            {"errors": forms.japanese(e.fields, runtime.settings, forms.COMPOSE), "html": ""}
        )
    templates = runtime.templates
    shown = {c: channel_class(c).compose(templates, notice, "ja") for c in notice.channels}
    # LINE: each language's bubble the notice has, as each reader will get it
    bubbles = {
        lang: channel_class("line").compose(templates, notice, lang)
        for lang in notice.translations
        if "line" in notice.channels
    }
    html = templates.page(  # what the workers will send, so staff see what residents get
        "console/previews.html",
        previews=shown,
        translated=bubbles,
        html_lang=HTML_LANG,
        weight=weight,
        limit=LIMIT,
        own_mark=OWN_MARK,
    )
    return json_response({"errors": {}, "html": html})


def _values(form: Any) -> dict[str, Any]:
    """What staff typed, to show the form again as they left it."""
    values: dict[str, Any] = {k: forms.text(form, k) for k in form if k not in ("csrf",)}
    for name in ("topics", "areas", "channels"):
        values[name] = forms.chosen(form, name)
    values["body"] = forms.form_body(form)
    return values


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console", home)
    r.add_get("/console/signin", signin_form)
    r.add_post("/console/signin", signin)
    r.add_post("/console/signout", signout)
    r.add_get("/console/notices", notices)
    r.add_get("/console/notices/progress", progress)
    r.add_post("/console/notices/{id}/cancel", cancel)
    r.add_get("/console/compose", compose_form)
    r.add_post("/console/compose", compose)
    r.add_post("/console/preview", preview)
    r.add_static("/console/static", TEMPLATES_DIR / "console" / "static", follow_symlinks=False)
