"""Email: a multipart/alternative message per subscriber, rendered once per language."""

from __future__ import annotations

import asyncio
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar

from channels.base import BaseChannel, Batch, Outcome, Recipient
from channels.outbox import write_atomic
from notifier.models import Announcement
from notifier.render import Templates

OUTBOX_SENDER = "notifier@localhost"


class EmailChannel(BaseChannel):
    name: ClassVar[str] = "email"
    audience = "subscribers"
    batch_size: ClassVar[int] = 50

    @staticmethod
    def compose(templates: Templates, notice: Announcement, lang: str) -> dict[str, Any]:
        return {
            "subject": templates.render("email/announcement.subject.txt", notice, lang),
            "text": templates.render("email/announcement.txt", notice, lang),
            "html": templates.render("email/announcement.html", notice, lang),
        }

    def message(self, batch: Batch, recipient: Recipient) -> EmailMessage:
        """One recipient's message: the shared parts plus its own headers (no rendering)."""
        settings = self.context.settings
        sender = settings.mail_from or OUTBOX_SENDER
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = recipient.address
        msg["Subject"] = batch.content["subject"]
        msg["Date"] = format_datetime(datetime.now(settings.tz))
        msg["Message-ID"] = make_msgid(
            idstring=f"{batch.notice_id}.{recipient.id}", domain=sender.rpartition("@")[2]
        )
        msg.set_content(batch.content["text"], charset="utf-8")
        msg.add_alternative(batch.content["html"], subtype="html", charset="utf-8")
        return msg

    async def _send(self, batch: Batch) -> Outcome:
        folder = self.context.outbox(self.name)

        def write_all() -> int:
            for recipient in batch.recipients:
                data = self.message(batch, recipient).as_bytes()
                write_atomic(folder / f"{batch.notice_id}-{recipient.id}.eml", data)
            return len(batch.recipients)

        return Outcome(sent=await asyncio.to_thread(write_all))
