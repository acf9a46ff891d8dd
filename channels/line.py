"""LINE: multicast of rendered messages to subscribers' user ids."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from channels.base import BaseChannel, Batch, Outcome, PermanentError
from channels.outbox import write_json
from notifier.models import Announcement
from notifier.render import Templates

TEXT_LIMIT = 5000  # LINE counts UTF-16 code units


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_text(text: str, limit: int, tail: str) -> str:
    """Cut ``text`` so that it and ``tail`` fit in ``limit`` UTF-16 units."""
    if utf16_len(text) <= limit:
        return text
    room = limit - utf16_len(tail) - 1
    cut = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", errors="ignore")
    return cut.rstrip() + "…" + tail


class LineChannel(BaseChannel):
    name: ClassVar[str] = "line"
    audience = "subscribers"
    batch_size: ClassVar[int] = 500

    @staticmethod
    def compose(templates: Templates, notice: Announcement, lang: str) -> dict[str, Any]:
        text = templates.render("line/announcement.txt", notice, lang)
        tail = f"\n{notice.url}" if notice.url else ""
        return {"messages": [{"type": "text", "text": fit_text(text, TEXT_LIMIT, tail)}]}

    def request_body(self, batch: Batch) -> dict[str, Any]:
        """The multicast request, exactly as LINE's API takes it."""
        return {"to": [r.address for r in batch.recipients], "messages": batch.content["messages"]}

    async def _send(self, batch: Batch) -> Outcome:
        if not batch.recipients:
            raise PermanentError("a multicast needs at least one user id")
        path = self.context.outbox(self.name) / (
            f"{batch.notice_id}-{batch.lang}-{batch.number:04d}.json"
        )
        await asyncio.to_thread(write_json, path, self.request_body(batch))
        return Outcome(sent=len(batch.recipients))
