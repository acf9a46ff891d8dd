"""What every console page shares: a page drawn from templates/console/ for the signed-in
session, and the check each page makes first (signed in, the role, the CSRF token)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from notifier import channel_registry
from notifier.hazards import HAZARDS
from notifier.levels import LEVELS
from notifier.web.guard import audit
from notifier.web.http import RUNTIME, Refused, read_form
from notifier.web.session import Session, csrf_ok, current

ROLE_NAMES = {"staff": "職員", "emergency": "危機管理", "admin": "管理者"}


def page(
    request: web.Request,
    name: str,
    session: Session | None,
    status: int = 200,
    **values: Any,
) -> web.Response:
    runtime = request.app[RUNTIME]
    html = runtime.templates.page(
        f"console/{name}",
        who=session.who if session else None,
        csrf=session.csrf if session else "",
        role_names=ROLE_NAMES,
        path=request.path,
        channels=channel_registry.names(),
        channel_labels={n: s.label for n, s in channel_registry.REGISTRY.items()},
        levels=LEVELS,
        hazards=HAZARDS,
        **values,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def need(request: web.Request, role: str | None) -> Session:
    """The signed-in session, if it may act as ``role`` (None: anyone signed in); a POST
    must carry the session's CSRF token. Else: to the sign-in page, or a 403 page."""
    session = await current(request, request.app[RUNTIME])
    if session is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"/console/signin?next={quote(request.path_qs)}")
        raise Refused(page(request, "refused.html", None, 401, reason="signin"))
    if role is not None and not session.who.may(role):
        await audit(request, session.who, "console.refused", request.path, "forbidden", needs=role)
        raise Refused(page(request, "refused.html", session, 403, reason="role", role=role))
    form = await read_form(request) if request.method == "POST" else None
    if form is not None and not csrf_ok(session.csrf, form.get("csrf")):
        await audit(request, session.who, "console.refused", request.path, "bad_csrf")
        raise Refused(page(request, "refused.html", session, 403, reason="csrf"))
    return session
