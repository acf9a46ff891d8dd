"""The desk's side of the JMA's drafts (notifier/jma_drafts.py): a draft approved becomes an
alert (an update or the all-clear of the alert its event's earlier draft became), a
draft dismissed is kept as dismissed. Each draft is issued at most once, however often
it is approved or by however many desks at once: its issue carries an idempotency key of
its own, so a second approval gets the first one's alert."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from notifier.alerts import AlertDesk, AlertRefused, Issued, validate
from notifier.config import Settings
from notifier.jma_drafts import Draft, DraftStore
from notifier.logs import event

log = logging.getLogger(__name__)

AUTO = "jma-auto"  # who issues the drafts of the kinds NOTIFIER_JMA_AUTO_ISSUE names


class DraftDesk:
    def __init__(self, drafts: DraftStore, desk: AlertDesk, settings: Settings) -> None:
        self.drafts = drafts
        self.desk = desk
        self.settings = settings

    async def approve(self, draft_id: str, by: str) -> Issued:
        """Issue the draft as an alert; 404 unknown, 409 dismissed or with nothing to call
        off (the warning it lifts was never sent)."""
        draft = await self._draft(draft_id)
        if draft.state == "dismissed":
            raise AlertRefused(409, "not_pending", "the draft was dismissed")
        data = {k: v for k, v in draft.alert.items() if k not in ("kind", "type", "drill")}
        drill = bool(draft.alert.get("drill"))
        digest = hashlib.sha256(f"jma-draft\0{draft.id}".encode()).hexdigest()
        once = (
            digest,
            hashlib.sha256(json.dumps(draft.alert, sort_keys=True).encode()).hexdigest(),
        )
        follows = await self.drafts.follows_alert(draft)
        if draft.alert.get("type") == "cancel":
            if follows is None:
                await self.drafts.dismiss(draft.id)
                raise AlertRefused(
                    409, "nothing_to_cancel", "the alert it calls off was never issued"
                )
            words: dict[str, Any] = {k: data[k] for k in ("title", "body") if k in data}
            issued = await self.desk.cancel(follows, by, words, idempotency=once)
        else:
            if draft.alert.get("type") == "update" and follows is not None:
                data["supersedes"] = follows
            issued = await self.desk.issue(
                validate(data, self.settings, drill=drill), by, idempotency=once
            )
        if not issued.conflict:
            await self.drafts.approve(draft.id, issued.id)
            event(log, "draft.approve", draft=draft.id, alert=issued.id, by=by)
        return issued

    async def dismiss(self, draft_id: str) -> str:
        """'ok', or the state the draft is already in (approved, dismissed); 404 unknown."""
        draft = await self._draft(draft_id)
        return await self.drafts.dismiss(draft.id)

    async def taken(self, draft: Draft) -> None:
        """What the reader calls for each new draft: issued at once when its kind is one the
        operator named for auto-issue (NOTIFIER_JMA_AUTO_ISSUE), else left for the desk."""
        event(log, "draft.new", draft=draft.id, kind=draft.source.kind)
        if self.drafts.auto_issue(draft):
            await self.approve(draft.id, AUTO)

    async def _draft(self, draft_id: str) -> Draft:
        draft = await self.drafts.get(draft_id)
        if draft is None:
            raise AlertRefused(404, "not_found", "no such draft")
        return draft
