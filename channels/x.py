"""X (Twitter): one public post per notice on the ward's account."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from channels.base import BaseChannel, Batch, Outcome
from channels.outbox import write_json
from notifier.models import Announcement
from notifier.render import Templates


class XChannel(BaseChannel):
    name: ClassVar[str] = "x"
    audience = "public"
    batch_size: ClassVar[int] = 1

    translated = False  # the ward's account posts in Japanese

    @staticmethod
    def compose(templates: Templates, notice: Announcement, lang: str) -> dict[str, Any]:
        return {"text": templates.render("x/announcement.txt", notice, lang)}

    async def _send(self, batch: Batch) -> Outcome:
        path = self.context.outbox(self.name) / f"{batch.notice_id}.json"
        await asyncio.to_thread(write_json, path, {"text": batch.content["text"]})
        return Outcome(sent=1)
