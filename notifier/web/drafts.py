"""The emergency desk's API for the JMA's drafts: list them, approve one (it goes out as an
alert, an update or the all-clear) or dismiss it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from aiohttp import web

from notifier.alerts import AlertRefused
from notifier.jma_drafts import Draft
from notifier.models import Invalid
from notifier.web.alerts import answer
from notifier.web.guard import audit, require
from notifier.web.http import RUNTIME, ApiError, json_response

log = logging.getLogger(__name__)


def view(draft: Draft) -> dict[str, Any]:
    """A draft as the API shows it (it holds no personal data: the JMA's words and ours)."""
    return asdict(draft)


async def list_drafts(request: web.Request) -> web.Response:
    await require(request, "emergency", "draft.list")
    drafts = await request.app[RUNTIME].drafts.drafts.list(100)
    return json_response({"drafts": [view(d) for d in drafts]})


async def get_draft(request: web.Request) -> web.Response:
    await require(request, "emergency", "draft.read")
    draft = await request.app[RUNTIME].drafts.drafts.get(request.match_info["id"])
    if draft is None:
        raise ApiError(404, "not_found", "no such draft")
    return json_response(view(draft))


async def approve_draft(request: web.Request) -> web.Response:
    token = await require(request, "emergency", "draft.approve")
    draft_id = request.match_info["id"]
    try:
        issued = await request.app[RUNTIME].drafts.approve(draft_id, token.name)
    except Invalid as e:  # the ward's area or text rules refuse what the JMA said
        await audit(request, token, "draft.approve", draft_id, "invalid")
        raise ApiError(400, "invalid", "the draft has errors", e.fields) from None
    except AlertRefused as e:
        await audit(request, token, "draft.approve", draft_id, e.code)
        raise ApiError(e.status, e.code, e.message) from None
    if not issued.replay:
        await audit(request, token, "draft.approve", draft_id, "ok", alert=issued.id)
    return await answer(request, token, "alert.issue", issued)


async def dismiss_draft(request: web.Request) -> web.Response:
    token = await require(request, "emergency", "draft.dismiss")
    draft_id = request.match_info["id"]
    try:
        outcome = await request.app[RUNTIME].drafts.dismiss(draft_id)
    except AlertRefused as e:
        raise ApiError(e.status, e.code, e.message) from None
    await audit(request, token, "draft.dismiss", draft_id, outcome)
    if outcome != "ok":
        raise ApiError(409, "not_pending", f"the draft is {outcome}")
    return json_response({"id": draft_id, "state": "dismissed"})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/drafts", list_drafts)
    r.add_get("/api/drafts/{id}", get_draft)
    r.add_post("/api/drafts/{id}/approve", approve_draft)
    r.add_post("/api/drafts/{id}/dismiss", dismiss_draft)
