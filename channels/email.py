"""Email: a multipart/alternative message per subscriber, rendered once per language.

The body is rendered once per (notice, language) with a placeholder where each
recipient's own unsubscribe link goes; a recipient's message is that body with the link
put in and its own headers — no template render per recipient. Live, messages go out
over a small pool of long-lived SMTP connections; each address a notice reached is
recorded at once, so a retry or a restarted worker never mails it twice.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar

import aiosmtplib

from channels.base import BaseChannel, Batch, Context, Outcome, Recipient, RetryableError
from channels.outbox import write_atomic
from channels.smtp_pool import SmtpPool
from notifier.models import AnyNotice
from notifier.render import Templates
from notifier.subscribers import SubscriberStore

OUTBOX_SENDER = "notifier@localhost"
UNSUBSCRIBE = "%%UNSUBSCRIBE_URL%%"  # stands in the rendered body for each recipient's link
TEXT_PART, HTML_PART = "%%TEXT_PART%%\n", "%%HTML_PART%%\n"


def _base64(text: str) -> bytes:
    """A body part's payload as the email package writes it for SMTP: the text with CRLF
    line ends, in base64 lines of 76 columns ended by CRLF."""
    lines = text.splitlines() or [""]
    data = ("\r\n".join(lines) + "\r\n").encode()
    return base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip(b"\r\n")


@dataclass(frozen=True)
class Skeleton:
    raw: bytes
    text: str
    html: str
    text_mark: bytes = _base64(TEXT_PART)
    html_mark: bytes = _base64(HTML_PART)


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
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> dict[str, Any]:
        extra = {"unsubscribe_url": UNSUBSCRIBE}
        return {
            "subject": templates.render("email/announcement.subject.txt", notice, lang),
            "text": templates.render("email/announcement.txt", notice, lang, **extra),
            "html": templates.render("email/announcement.html", notice, lang, **extra),
        }

    @property
    def sender(self) -> str:
        return self.context.settings.mail_from or OUTBOX_SENDER

    def skeleton(self, batch: Batch) -> Skeleton:
        """The batch's message, built once by the email package with stand-ins for what
        differs per recipient (address, Message-ID, unsubscribe token, the body parts)."""
        settings = self.context.settings
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.sender
        msg["To"] = "%%TO%%"
        msg["Subject"] = batch.content["subject"]
        msg["Date"] = format_datetime(datetime.now(settings.tz))
        msg["Message-ID"] = "<%%MESSAGE_ID%%>"
        mailto = f"mailto:{self.sender}?subject=unsubscribe%20%%TOKEN%%"
        msg["List-Unsubscribe"] = f"<{settings.public_url}/unsubscribe/%%TOKEN%%>, <{mailto}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        msg.set_content(TEXT_PART, charset="utf-8", cte="base64")
        msg.add_alternative(HTML_PART, subtype="html", charset="utf-8", cte="base64")
        skeleton = Skeleton(msg.as_bytes(), batch.content["text"], batch.content["html"])
        if (
            skeleton.raw.count(skeleton.text_mark) != 1
            or skeleton.raw.count(skeleton.html_mark) != 1
        ):
            raise RuntimeError("the email package wrote the body parts in an unexpected form")
        return skeleton

    def message(self, skeleton: Skeleton, batch: Batch, recipient: Recipient, token: str) -> bytes:
        """One recipient's message: the skeleton with their own parts put in (microseconds:
        no template and no MIME building per recipient)."""
        link = f"{self.context.settings.public_url}/unsubscribe/{token}"
        domain = self.sender.rpartition("@")[2]
        message_id = f"{batch.notice_id}.{recipient.id}.{secrets.token_hex(4)}@{domain}"
        return (
            skeleton.raw.replace(b"%%TO%%", recipient.address.encode())
            .replace(b"%%MESSAGE_ID%%", message_id.encode())
            .replace(b"%%TOKEN%%", token.encode())
            .replace(skeleton.text_mark, _base64(skeleton.text.replace(UNSUBSCRIBE, link)))
            .replace(skeleton.html_mark, _base64(skeleton.html.replace(UNSUBSCRIBE, link)))
        )

    async def _send(self, batch: Batch) -> Outcome:
        keys, redis = self.context.keys, self.context.redis
        ids = [r.id for r in batch.recipients]
        tokens = await self._subscribers.unsubscribe_tokens(ids)
        if self._pool is None:
            return await self._to_outbox(batch, tokens)
        done_key = keys.mailed(batch.notice_id)
        already = await redis.smismember(done_key, ids) if ids else []
        todo = [r for r, sent in zip(batch.recipients, already, strict=True) if not sent]
        skeleton = self.skeleton(batch)
        sent = await asyncio.gather(
            *(self._one(skeleton, batch, r, tokens[r.id]) for r in todo), return_exceptions=True
        )
        for result in sent:  # every send has finished; what went out is on record
            if isinstance(result, BaseException):
                raise result
        results = [str(r) for r in sent]
        if todo:
            await redis.expire(done_key, 30 * 24 * 3600)
        failed = {r.id: reason for r, reason in zip(todo, results, strict=True) if reason}
        retry = {sid: reason for sid, reason in failed.items() if reason.startswith("4")}
        bounced = [sid for sid, reason in failed.items() if sid not in retry]
        if bounced:
            await self._bounce(bounced)
        if retry:  # what did go out is on record: the retry sends only the rest
            raise RetryableError(f"SMTP {len(retry)} deferred: {next(iter(retry.values()))}")
        permanent = {sid: f"SMTP {reason}" for sid, reason in failed.items()}
        return Outcome(sent=len(batch.recipients) - len(permanent), failed=permanent)

    async def _one(self, skeleton: Skeleton, batch: Batch, recipient: Recipient, token: str) -> str:
        """Send to one recipient: '' when it went, else the server's code and message."""
        assert self._pool is not None
        message = self.message(skeleton, batch, recipient, token)
        try:
            errors = await self._pool.send(
                message, self.sender, recipient.address, urgent=batch.kind == "alert"
            )
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

        skeleton = self.skeleton(batch)

        def write_all() -> int:
            for recipient in batch.recipients:
                data = self.message(skeleton, batch, recipient, tokens[recipient.id])
                write_atomic(folder / f"{batch.notice_id}-{recipient.id}.eml", data)
            return len(batch.recipients)

        return Outcome(sent=await asyncio.to_thread(write_all))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
