"""The public feed of the ward's alerts: ``/alerts.atom`` (Atom 1.0, each entry its CAP
1.2 document) and ``/alerts/{id}.cap``. No token; counted per address as /api/ is.

In the feed: every active alert, and every other alert sent in the last 7 days, newest
first, at most 50. Never an alert waiting for approval or withdrawn, and never a drill
(a drill goes to the test audience only). Nothing but what residents were sent: no
names of staff, no subscribers.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import web

from notifier import cap_out
from notifier.cap_out import Published
from notifier.runtime import Runtime
from notifier.web.guard import over
from notifier.web.http import RUNTIME, ApiError
from notifier.web.middleware import too_many

WINDOW = timedelta(days=7)
MAX_ENTRIES = 50
PUBLIC_STATES = ("active", "superseded", "cancelled", "all-clear")
MAX_AGE = 60  # seconds a cache may keep the feed


def _published(view: dict[str, Any]) -> Published | None:
    notice = view["notice"]
    if view["kind"] != "alert" or view.get("state") not in PUBLIC_STATES or notice.get("drill"):
        return None
    sent = datetime.fromisoformat(notice["received_at"])
    return Published(view["id"], notice, sent)


async def _limit(request: web.Request) -> None:
    runtime = request.app[RUNTIME]
    client = request.remote or "unknown"
    wait = await over(runtime, f"feed:ip:{client}", runtime.settings.api_rate_per_ip, 60)
    if wait:
        raise too_many("too many requests from this address", wait)


async def _chain(
    runtime: Runtime, alert: Published, known: dict[str, Published]
) -> list[Published]:
    """The alerts ``alert`` follows, oldest first (an update of an update of …)."""
    chain: list[Published] = []
    ref = alert.notice.get("references")
    while ref and len(chain) < 100:
        found = known.get(ref)
        if found is None:
            view = await runtime.notices.get(ref)
            found = _published(view) if view else None
        if found is None:
            break
        chain.insert(0, found)
        ref = found.notice.get("references")
    return chain


def _element(runtime: Runtime, alert: Published, chain: list[Published]) -> Any:
    settings = runtime.settings
    sender = cap_out.sender(settings.public_url)
    return cap_out.alert_element(alert, chain, settings.ward, sender, settings.tz)


def _cached(
    request: web.Request, body: bytes, content_type: str, modified: datetime
) -> web.Response:
    """``body`` with its ETag and Last-Modified, or 304 if the client has it."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    modified = modified.replace(microsecond=0)
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(modified.astimezone(UTC), usegmt=True),
        "Cache-Control": f"public, max-age={MAX_AGE}",
    }
    matches = request.headers.get("If-None-Match")
    if matches is not None:
        fresh = matches.strip() == "*" or etag in [m.strip() for m in matches.split(",")]
    else:
        fresh = _not_modified_since(request.headers.get("If-Modified-Since"), modified)
    if fresh:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


def _not_modified_since(value: str | None, modified: datetime) -> bool:
    if not value:
        return False
    try:
        since = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return since.tzinfo is not None and modified <= since


def choose(
    alerts: list[Published], states: dict[str, str], now: datetime
) -> tuple[list[Published], datetime]:
    """The feed's alerts, newest first, and when the feed last changed: when the newest was
    sent, or when the last one left the window (the epoch for a ward that never sent one)."""
    recent = [a for a in alerts if states.get(a.id) == "active" or now - a.sent <= WINDOW]
    recent.sort(key=lambda a: a.sent, reverse=True)
    ids = {a.id for a in recent}
    gone = [a.sent + WINDOW for a in alerts if a.id not in ids]
    moments = [a.sent for a in alerts] + [t for t in gone if t <= now]
    return recent[:MAX_ENTRIES], max(moments, default=datetime(1970, 1, 1, tzinfo=UTC))


async def get_feed(request: web.Request) -> web.Response:
    await _limit(request)
    runtime = request.app[RUNTIME]
    now = datetime.now(UTC)
    views = await runtime.notices.list(None, 1000)
    states = {v["id"]: str(v.get("state")) for v in views}
    alerts = [p for p in map(_published, views) if p is not None]
    shown, updated = choose(alerts, states, now)
    known = {a.id: a for a in alerts}
    entries = [(a, _element(runtime, a, await _chain(runtime, a, known))) for a in shown]
    body = cap_out.atom_feed(entries, runtime.settings.ward, runtime.settings.public_url, updated)
    # an approval shows an alert sent before it: Last-Modified also counts its record's change
    touched = [datetime.fromisoformat(v["updated"]) for v in views if v["id"] in known]
    return _cached(request, body, "application/atom+xml", max([updated, *touched]))


async def get_cap(request: web.Request) -> web.Response:
    await _limit(request)
    runtime = request.app[RUNTIME]
    view = await runtime.notices.get(request.match_info["id"])
    alert = _published(view) if view else None
    if alert is None:
        raise ApiError(404, "not_found", "no such alert")
    element = _element(runtime, alert, await _chain(runtime, alert, {}))
    return _cached(request, cap_out.cap_document(element), "application/cap+xml", alert.sent)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/alerts.atom", get_feed)
    app.router.add_get(r"/alerts/{id:[A-Za-z0-9_-]{1,64}}.cap", get_cap)
