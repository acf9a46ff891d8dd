"""The ward's shelters on the web: the desk's API and console page that open and close
them (role ``emergency``, each change audited), and the public page ``/shelters`` of
those open now (no personal data, no script, in the resident's language)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiohttp import web

from notifier.hazards import HAZARDS
from notifier.i18n import N_, joined, speaker
from notifier.logs import event
from notifier.shelters import ShelterState, ShelterStore
from notifier.tokens import Token
from notifier.web.guard import audit, require
from notifier.web.http import RUNTIME, ApiError, Refused, json_response
from notifier.web.pages import need
from notifier.web.pages import page as console_page
from notifier.web.subscribe import language
from notifier.web.subscribe import page as resident_page

log = logging.getLogger(__name__)
CONSOLE = "/console/shelters"
# the hazards' names as residents read them, marked for the catalogues (the same words
# as notifier.hazards.HAZARDS, which tests/notifier/web/test_shelters.py holds them to)
HAZARD_NAMES = {
    "flood": N_("洪水"),
    "landslide": N_("崖崩れ、土石流及び地滑り"),
    "storm_surge": N_("高潮"),
    "earthquake": N_("地震"),
    "tsunami": N_("津波"),
    "fire": N_("大規模な火事"),
    "inland_flood": N_("内水氾濫"),
    "volcano": N_("火山現象"),
}


def store(request: web.Request) -> ShelterStore:
    runtime = request.app[RUNTIME]
    return ShelterStore(runtime.redis, runtime.keys, runtime.settings.ward)


def view(state: ShelterState, request: web.Request) -> dict[str, Any]:
    """A shelter as the API shows it."""
    s, tz = state.shelter, request.app[RUNTIME].settings.tz
    opened = datetime.fromtimestamp(state.opened, tz).isoformat() if state.opened else None
    return {
        "id": s.id,
        "name": s.name,
        "address": s.address,
        "lat": s.lat,
        "lon": s.lon,
        "area": s.area,
        "hazards": list(s.hazards),
        "also_shelter": s.also_shelter,
        "open": state.is_open,
        "opened_at": opened,
        "map_url": s.map_url,
    }


async def list_shelters(request: web.Request) -> web.Response:
    await require(request, "staff", "shelter.list")
    states = await store(request).all()
    return json_response({"shelters": [view(s, request) for s in states]})


async def _change(request: web.Request, who: Token, is_open: bool) -> ShelterState | None:
    """Open or close the shelter of the route's id, in the audit log either way; None if
    there is no such shelter."""
    shelter_id = request.match_info["id"]
    action = "shelter.open" if is_open else "shelter.close"
    shelters = store(request)
    done = await shelters.set_open(shelter_id, is_open)
    await audit(request, who, action, shelter_id, "ok" if done else "not_found")
    if not done:
        return None
    event(log, action, shelter=shelter_id, by=who.name)
    return await shelters.get(shelter_id)


async def open_shelter(request: web.Request) -> web.Response:
    return await _api_change(request, True)


async def close_shelter(request: web.Request) -> web.Response:
    return await _api_change(request, False)


async def _api_change(request: web.Request, is_open: bool) -> web.Response:
    token = await require(request, "emergency", "shelter.open" if is_open else "shelter.close")
    state = await _change(request, token, is_open)
    if state is None:
        raise ApiError(404, "not_found", "no such shelter; `notifier shelters list` lists them")
    return json_response(view(state, request))


async def console_list(request: web.Request) -> web.Response:
    session = await need(request, "emergency")
    runtime = request.app[RUNTIME]
    states = await store(request).all()
    ward = runtime.settings.ward
    return console_page(
        request,
        "shelters.html",
        session,
        shelters=states,
        area_names={a.code: a.name for a in ward.areas},
        hazard_names=HAZARDS,
        opened={
            s.shelter.id: datetime.fromtimestamp(s.opened, runtime.settings.tz)
            for s in states
            if s.opened is not None
        },
        done=request.query.get("done"),
    )


async def console_open(request: web.Request) -> web.Response:
    return await _console_change(request, True)


async def console_close(request: web.Request) -> web.Response:
    return await _console_change(request, False)


async def _console_change(request: web.Request, is_open: bool) -> web.Response:
    session = await need(request, "emergency")
    if await _change(request, session.who, is_open) is None:
        raise Refused(console_page(request, "refused.html", session, 404, reason="missing"))
    done = "opened" if is_open else "closed"
    raise web.HTTPSeeOther(f"{CONSOLE}?done={done}#shelter-{request.match_info['id']}")


async def public(request: web.Request) -> web.Response:
    """The shelters open now, by area, for anyone: no sign-in, no personal data."""
    runtime = request.app[RUNTIME]
    lang = language(request)
    say, ward = speaker(lang), runtime.settings.ward
    shelters = await store(request).open_for([], None)
    by_area = [
        (area.label(lang), [s for s in shelters if s.area == area.code]) for area in ward.areas
    ]
    response = resident_page(
        request,
        "web/shelters.html",
        lang,
        by_area=[(name, found) for name, found in by_area if found],
        hazards={s.id: joined([say(HAZARD_NAMES[h]) for h in s.hazards], lang) for s in shelters},
        now=datetime.now(runtime.settings.tz),
    )
    response.headers["Cache-Control"] = "no-cache"  # a shelter may open any minute
    return response


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/shelters", list_shelters)
    r.add_post("/api/shelters/{id}/open", open_shelter)
    r.add_post("/api/shelters/{id}/close", close_shelter)
    r.add_get(CONSOLE, console_list)
    r.add_post(CONSOLE + "/{id}/open", console_open)
    r.add_post(CONSOLE + "/{id}/close", console_close)
    r.add_get("/shelters", public)
