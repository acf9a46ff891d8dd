"""Email: a multipart/alternative message per subscriber, rendered once per language.

The body is rendered once per (notice, language) with a placeholder where each
recipient's own unsubscribe link goes; a recipient's message is that body with the link
put in and its own headers — no template render per recipient. Live, messages go out
over a small pool of long-lived SMTP connections; each address a notice reached is
recorded at once, so a retry or a restarted worker never mails it twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar
from urllib.parse import quote

import aiosmtplib

from channels.base import BaseChannel, Batch, Context, Outcome, Recipient, RetryableError
from channels.outbox import write_atomic
from channels.smtp_pool import SmtpPool
from notifier.models import Announcement
from notifier.render import Templates
from notifier.subscribers import SubscriberStore

OUTBOX_SENDER = "notifier@localhost"
UNSUBSCRIBE = "%%UNSUBSCRIBE_URL%%"  # stands in the rendered body for each recipient's link


class EmailChannel(BaseChannel):
    name: ClassVar[str] = "email"
    audience = "subscribers"
    batch_size: ClassVar[int] = 50

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.live = context.settings.live("email")
        self._pool = SmtpPool(context.settings, context.settings.smtp_pool) if self.live else None
        self._subscribers = SubscriberStore(context.redis, context.keys, context.settings)

    @staticmethod
    def compose(templates: Templates, notice: Announcement, lang: str) -> dict[str, Any]:
        extra = {"unsubscribe_url": UNSUBSCRIBE}
        return {
            "subject": templates.render("email/announcement.subject.txt", notice, lang),
            "text": templates.render("email/announcement.txt", notice, lang, **extra),
            "html": templates.render("email/announcement.html", notice, lang, **extra),
        }

    @property
    def sender(self) -> str:
        return self.context.settings.mail_from or OUTBOX_SENDER

    def message(self, batch: Batch, recipient: Recipient, token: str) -> EmailMessage:
        """One recipient's message: the shared parts plus its own link and headers."""
        settings = self.context.settings
        link = f"{settings.public_url}/unsubscribe/{token}"
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = recipient.address
        msg["Subject"] = batch.content["subject"]
        msg["Date"] = format_datetime(datetime.now(settings.tz))
        msg["Message-ID"] = make_msgid(
            idstring=f"{batch.notice_id}.{recipient.id}", domain=self.sender.rpartition("@")[2]
        )
        mailto = f"mailto:{self.sender}?subject={quote('unsubscribe ' + token)}"
        msg["List-Unsubscribe"] = f"<{link}>, <{mailto}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        msg.set_content(batch.content["text"].replace(UNSUBSCRIBE, link), charset="utf-8")
        msg.add_alternative(
            batch.content["html"].replace(UNSUBSCRIBE, link), subtype="html", charset="utf-8"
        )
        return msg

    async def _send(self, batch: Batch) -> Outcome:
        keys, redis = self.context.keys, self.context.redis
        ids = [r.id for r in batch.recipients]
        tokens = await self._subscribers.unsubscribe_tokens(ids)
        if self._pool is None:
            return await self._to_outbox(batch, tokens)
        done_key = keys.mailed(batch.notice_id)
        already = await redis.smismember(done_key, ids) if ids else []
        todo = [r for r, sent in zip(batch.recipients, already, strict=True) if not sent]
        sent = await asyncio.gather(
            *(self._one(batch, r, tokens[r.id]) for r in todo), return_exceptions=True
        )
        for result in sent:  # every send has finished; what went out is on record
            if isinstance(result, BaseException):
                raise result
        results = [str(r) for r in sent]
        failed = {r.id: reason for r, reason in zip(todo, results, strict=True) if reason}
        retry = {sid: reason for sid, reason in failed.items() if reason.startswith("4")}
        bounced = [sid for sid, reason in failed.items() if sid not in retry]
        if bounced:
            await self._bounce(bounced)
        if retry:  # what did go out is on record: the retry sends only the rest
            raise RetryableError(f"SMTP {len(retry)} deferred: {next(iter(retry.values()))}")
        permanent = {sid: f"SMTP {reason}" for sid, reason in failed.items()}
        return Outcome(sent=len(batch.recipients) - len(permanent), failed=permanent)

    async def _one(self, batch: Batch, recipient: Recipient, token: str) -> str:
        """Send to one recipient: '' when it went, else the server's code and message."""
        assert self._pool is not None
        message = self.message(batch, recipient, token)
        try:
            errors = await self._pool.send(message, self.sender, recipient.address)
        except aiosmtplib.SMTPRecipientsRefused as e:
            (refusal,) = e.recipients
            return f"{refusal.code} {refusal.message}"
        except aiosmtplib.SMTPResponseException as e:
            return f"{e.code} {e.message}"
        except (aiosmtplib.SMTPException, OSError) as e:
            raise RetryableError(f"SMTP unreachable: {type(e).__name__}") from e
        if errors:
            (response,) = errors.values()
            return f"{response.code} {response.message}"
        keys, redis = self.context.keys, self.context.redis
        await redis.sadd(keys.mailed(batch.notice_id), recipient.id)
        await redis.expire(keys.mailed(batch.notice_id), 30 * 24 * 3600)
        return ""

    async def _bounce(self, subscriber_ids: list[str]) -> None:
        """Count permanent failures; an address that keeps failing is suspended."""
        keys, redis = self.context.keys, self.context.redis
        limit = self.context.settings.email_hard_bounces
        async with redis.pipeline(transaction=False) as pipe:
            for sid in subscriber_ids:
                pipe.hincrby(keys.bounces, sid, 1)
            counts = await pipe.execute()
        suspended = [sid for sid, n in zip(subscriber_ids, counts, strict=True) if n >= limit]
        if suspended:
            await redis.srem(keys.by_channel("email"), *suspended)
            await redis.sadd(keys.suspended("email"), *suspended)

    async def _to_outbox(self, batch: Batch, tokens: dict[str, str]) -> Outcome:
        folder = self.context.outbox(self.name)

        def write_all() -> int:
            for recipient in batch.recipients:
                data = self.message(batch, recipient, tokens[recipient.id]).as_bytes()
                write_atomic(folder / f"{batch.notice_id}-{recipient.id}.eml", data)
            return len(batch.recipients)

        return Outcome(sent=await asyncio.to_thread(write_all))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
