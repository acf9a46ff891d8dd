"""Email: a multipart/alternative message per subscriber, rendered once per language.

The body is rendered once per (notice, language) with a placeholder where each
recipient's own token goes (in the links to their settings and unsubscribe pages); a
recipient's message is that body with the token put in and its own headers — no
template render per recipient. Live, messages go out over a small pool of long-lived
SMTP connections; each address a notice reached is on record within milliseconds of its
250 (a group of them in one Redis write), so a retry or a restarted worker never mails
it twice.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, TypedDict

import aiosmtplib
from prometheus_client import Counter
from redis.exceptions import RedisError

from channels.base import BaseChannel, Batch, Context, Outcome, Recipient, RetryableError
from channels.outbox import write_atomic
from channels.smtp_pool import REFUSED, SmtpPool
from notifier.channel_registry import REGISTRY
from notifier.logs import event
from notifier.models import AnyNotice
from notifier.render import Templates
from notifier.subscribers import SubscriberStore
from notifier.text import CONTROL, LINE_BREAK

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from notifier.keys import Keys

log = logging.getLogger(__name__)

OUTBOX_SENDER = "notifier@localhost"
# stands in the rendered body for each recipient's token (in their settings and unsubscribe
# links): noncharacters, which no notice holds
OWN_MARK = "\ufdd0token\ufdd1"
TEXT_PART, HTML_PART = "%%TEXT_PART%%\n", "%%HTML_PART%%\n"
MAILED_TTL = 30 * 24 * 3600  # how long a notice's record of the addresses it reached is kept
LINGER = 0.010  # seconds a 250 may wait to be written with the others that came meanwhile
# seconds a record of 250s is tried again while Redis is away (a restart, a failover): the
# worker keeps its batch claimed meanwhile (ChannelWorker.renew), so nobody sends it again
LEDGER_PATIENCE = 60.0


def _crlf(text: str) -> bytes:
    """A body part's text as the email package writes it for SMTP: CRLF line ends."""
    return ("\r\n".join(text.splitlines() or [""]) + "\r\n").encode()


def _base64(data: bytes) -> bytes:
    """A body part's payload: base64 lines of 76 columns, CRLF between them."""
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


_NOT_ONE_LINE = re.compile(f"(?:{CONTROL.pattern}|{LINE_BREAK.pattern})+")


def subject_line(subject: str) -> bytes:
    """The Subject header, folded by the email package, on one line whatever a template
    made of it. One that holds ``=?`` is encoded whole: the email package would read it
    as encoded words (``=?utf-8?q?…?=``) and send something other than the title."""
    subject = _NOT_ONE_LINE.sub(" ", subject)
    if "=?" in subject:
        value = Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
        return f"Subject: {value}\r\n".encode("ascii")
    policy = email.policy.SMTP
    folded: str = policy.header_factory("Subject", subject).fold(policy=policy)
    return folded.encode("ascii")


# what differs per recipient, as the skeleton holds it until their message is made
TO, DATE, MESSAGE_ID, TOKEN = b"%%TO%%", b"%%DATE%%", b"%%MESSAGE_ID%%", b"%%TOKEN%%"
SUBJECT = b"%%SUBJECT%%"  # the notice's, put in once the skeleton is cut: it may hold "%%TO%%"
TEXT, HTML = _base64(_crlf(TEXT_PART)), _base64(_crlf(HTML_PART))
SLOTS = re.compile(b"(%b)" % b"|".join(map(re.escape, (TO, DATE, MESSAGE_ID, TOKEN, TEXT, HTML))))


@dataclass(frozen=True)
class Part:
    """A body part's text cut where each recipient's token goes; the base64
    lines of what comes before the first cut (as many whole lines as it fills) are made
    once, so a recipient's payload is a few lines to encode, not the whole part."""

    head: bytes  # base64 lines, each ended by CRLF
    rest: tuple[bytes, ...]

    @classmethod
    def of(cls, text: str) -> Part:
        data, mark = _crlf(text), OWN_MARK.encode()
        cut = data.find(mark)
        whole = (cut if cut >= 0 else len(data) - 1) // 57 * 57  # 57 bytes: one line of 76
        head = _base64(data[:whole]) + b"\r\n" if whole else b""
        return cls(head, tuple(data[whole:].split(mark)))

    def payload(self, token: bytes) -> bytes:
        return self.head + _base64(token.join(self.rest))


@dataclass(frozen=True)
class Skeleton:
    """A notice's message in one language, cut where each batch's and recipient's own
    parts go: ``pieces`` alternates the bytes all messages share with the slot (one of
    ``SLOTS``) that comes between them."""

    pieces: tuple[bytes, ...]
    text: Part
    html: Part
    date: bytes = b""  # the batch's


class Ledger:
    """The addresses each notice's email reached, written to Redis a group at a time.

    A 250 is on record within ``linger`` seconds and a round trip, about as soon as with a
    write per message (only what came back in that moment could be sent again after a
    crash), but a group of them goes in one command rather than a command each.

    Until Redis has the group, it exists only in this process: a write that fails (Redis
    restarting, a failover under way) is tried again for up to ``patience`` seconds, while
    the worker keeps the batch claimed so that no other takes it over. Under Sentinel each
    write waits for ``replicas`` to hold it (``WAIT``): an address whose record no replica
    confirmed in time, or that could not be written at all, could be mailed again if the
    master is lost now, and is counted in ``unconfirmed``
    (``notifier_email_unconfirmed_total``): that counter bounds the copies a failover can
    make.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        linger: float = LINGER,
        *,
        replicas: int = 0,
        replica_timeout: float = 0.5,
        patience: float = 30.0,
        unconfirmed: Counter | None = None,
    ) -> None:
        self._redis, self._keys, self._linger = redis, keys, linger
        self._replicas, self._replica_ms = replicas, max(1, int(replica_timeout * 1000))
        self._patience = patience
        self._unconfirmed = unconfirmed
        self._waiting: dict[str, list[str]] = {}  # notice id → subscriber ids
        self._next: asyncio.Task[None] | None = None  # the write that takes what is waiting

    def add(self, notice_id: str, subscriber_id: str) -> asyncio.Task[None]:
        """Put a reached address on record; the write that takes it (await it to know)."""
        self._waiting.setdefault(notice_id, []).append(subscriber_id)
        if self._next is None:
            self._next = asyncio.create_task(self._write())
            self._next.add_done_callback(_retrieve)
        return self._next

    async def _write(self) -> None:
        await asyncio.sleep(self._linger)
        waiting, self._waiting, self._next = self._waiting, {}, None
        failure: RedisError | None = None
        for notice_id, ids in waiting.items():  # one notice, mostly
            try:
                await self._keep(notice_id, ids)
            except RedisError as e:  # the others are still written
                failure = e
        if failure is not None:
            raise failure

    async def _keep(self, notice_id: str, ids: list[str]) -> None:
        key = self._keys.mailed(notice_id)
        give_up = time.monotonic() + self._patience
        delay = 0.05
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:  # WAIT: one
                    pipe.sadd(key, *ids)  # connection
                    pipe.expire(key, MAILED_TTL)
                    if self._replicas:
                        pipe.wait(self._replicas, self._replica_ms)
                    written = await pipe.execute()
                break
            except RedisError as e:
                if time.monotonic() + delay > give_up:
                    self._count(notice_id, ids, "email.ledger_lost", repr(e))
                    raise
                event(log, "email.ledger_retry", logging.WARNING, notice=notice_id, error=repr(e))
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
        if self._replicas and int(written[-1]) < self._replicas:
            self._count(notice_id, ids, "email.ledger_not_replicated", f"{written[-1]} replicas")

    def _count(self, notice_id: str, ids: list[str], name: str, why: str) -> None:
        if self._unconfirmed is not None:
            self._unconfirmed.inc(len(ids))
        event(log, name, logging.WARNING, notice=notice_id, addresses=len(ids), error=why)


def _retrieve(task: asyncio.Task[None]) -> None:
    """A failed write is raised to the batches that await it, and not logged as unseen
    when none does (one that gave up first)."""
    if not task.cancelled():
        task.exception()


class EmailContent(TypedDict):
    subject: str
    text: str
    html: str


class EmailChannel(BaseChannel[EmailContent]):
    spec = REGISTRY["email"]

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.live = context.settings.live(self.name)
        self._pool = SmtpPool(context.settings, context.settings.smtp_pool) if self.live else None
        self._subscribers = SubscriberStore(context.redis, context.keys, context.settings)
        settings = context.settings
        self._ledger = Ledger(
            context.redis,
            context.keys,
            replicas=settings.min_replicas,
            replica_timeout=settings.redis_replica_timeout,
            patience=LEDGER_PATIENCE,
            unconfirmed=context.metrics.email_unconfirmed,
        )
        self._skeletons: dict[tuple[str, str], Skeleton] = {}

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> EmailContent:
        public = templates.settings.public_url
        extra = {
            "unsubscribe_url": f"{public}/unsubscribe/{OWN_MARK}",
            "settings_url": f"{public}/subscribe/settings/{OWN_MARK}",
        }
        return {
            "subject": templates.render("email/announcement.subject.txt", notice, lang),
            "text": templates.render("email/announcement.txt", notice, lang, **extra),
            "html": templates.render("email/announcement.html", notice, lang, **extra),
        }

    @property
    def sender(self) -> str:
        return self.context.settings.mail_from or OUTBOX_SENDER

    def skeleton(self, batch: Batch) -> Skeleton:
        """The message of the batch's notice and language, built once by the email package
        with stand-ins for what differs per recipient (address, Message-ID, unsubscribe
        token, the body parts) and per batch (Date), and kept for the notice's other
        batches."""
        key = (batch.notice_id, batch.lang)
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            if len(self._skeletons) >= 64:
                self._skeletons.clear()
            skeleton = self._skeletons[key] = self._build(self.content_of(batch))
        date = format_datetime(datetime.now(self.context.settings.tz))
        return replace(skeleton, date=date.encode())

    def _build(self, content: EmailContent) -> Skeleton:
        settings = self.context.settings
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.sender
        msg["To"] = TO.decode()
        msg["Subject"] = SUBJECT.decode()
        msg["Message-ID"] = f"<{MESSAGE_ID.decode()}>"
        token = TOKEN.decode()
        mailto = f"mailto:{self.sender}?subject=unsubscribe%20{token}"
        msg["List-Unsubscribe"] = f"<{settings.public_url}/unsubscribe/{token}>, <{mailto}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        msg.set_content(TEXT_PART, charset="utf-8", cte="base64")
        msg.add_alternative(HTML_PART, subtype="html", charset="utf-8", cte="base64")
        # Date is the batch's: a stand-in would not pass the email package's date parser
        pieces = SLOTS.split(b"Date: " + DATE + b"\r\n" + msg.as_bytes())
        stand_in = b"Subject: " + SUBJECT + b"\r\n"
        if sorted(pieces[1::2]) != sorted([TO, DATE, MESSAGE_ID, TOKEN, TOKEN, TEXT, HTML]) or (
            sum(piece.count(stand_in) for piece in pieces[::2]) != 1
        ):
            raise RuntimeError("the email package wrote the message in an unexpected form")
        subject = subject_line(content["subject"])
        pieces[::2] = [piece.replace(stand_in, subject) for piece in pieces[::2]]
        return Skeleton(tuple(pieces), Part.of(content["text"]), Part.of(content["html"]))

    def message(self, skeleton: Skeleton, batch: Batch, recipient: Recipient, token: str) -> bytes:
        """One recipient's message: the skeleton with their own parts put in (microseconds:
        no template and no MIME building per recipient). Its Message-ID is the same each
        time it is made, so a copy that a crash made the worker send again can be told
        for what it is."""
        domain = self.sender.rpartition("@")[2]
        own = {
            TO: recipient.address.encode(),
            DATE: skeleton.date,
            MESSAGE_ID: f"{batch.notice_id}.{recipient.id}@{domain}".encode(),
            TOKEN: token.encode(),
            TEXT: skeleton.text.payload(token.encode()),
            HTML: skeleton.html.payload(token.encode()),
        }
        pieces = list(skeleton.pieces)
        pieces[1::2] = [own[slot] for slot in pieces[1::2]]
        return b"".join(pieces)

    async def _send(self, batch: Batch) -> Outcome:
        keys, redis = self.context.keys, self.context.redis
        ids = [r.id for r in batch.recipients]
        tokens = await self._subscribers.unsubscribe_tokens(ids)
        if self._pool is None:
            return await self._to_outbox(batch, tokens)
        already = await redis.smismember(keys.mailed(batch.notice_id), ids) if ids else []
        todo = [r for r, sent in zip(batch.recipients, already, strict=True) if not sent]
        skeleton = self.skeleton(batch)
        writes: set[asyncio.Task[None]] = set()
        sent = await asyncio.gather(
            *(self._one(skeleton, batch, r, tokens[r.id], writes) for r in todo),
            return_exceptions=True,
        )
        await asyncio.gather(*writes)  # every send has finished; what went out is on record
        for result in sent:
            if isinstance(result, BaseException):
                raise result
        failed = {r.id: str(reason) for r, reason in zip(todo, sent, strict=True) if reason}
        retry = {sid: reason for sid, reason in failed.items() if reason.startswith("4")}
        bounced = [sid for sid, reason in failed.items() if sid not in retry]
        if bounced:
            await self._bounce(bounced)
        if retry:  # what did go out is on record: the retry sends only the rest
            raise RetryableError(f"SMTP {len(retry)} deferred: {next(iter(retry.values()))}")
        permanent = {sid: f"SMTP {reason}" for sid, reason in failed.items()}
        return Outcome(sent=len(batch.recipients) - len(permanent), failed=permanent)

    async def _one(
        self,
        skeleton: Skeleton,
        batch: Batch,
        recipient: Recipient,
        token: str,
        writes: set[asyncio.Task[None]],
    ) -> str:
        """Send to one recipient: '' when it went (and the write that records it is in
        ``writes``), else the server's code and message."""
        assert self._pool is not None
        message = self.message(skeleton, batch, recipient, token)
        try:
            await self._pool.send(
                message, self.sender, recipient.address, urgent=batch.kind == "alert"
            )
        except REFUSED as e:
            return f"{e.code} {e.message}"
        except aiosmtplib.SMTPResponseException as e:  # the session (greeting, AUTH)
            raise RetryableError(f"SMTP session refused: {e.code} {e.message}") from e
        except (aiosmtplib.SMTPException, OSError) as e:
            raise RetryableError(f"SMTP unreachable: {type(e).__name__}") from e
        writes.add(self._ledger.add(batch.notice_id, recipient.id))
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
            await self._subscribers.suspend(self.name, suspended)

    async def _to_outbox(self, batch: Batch, tokens: dict[str, str]) -> Outcome:
        folder = self.context.outbox(self.name)

        skeleton = self.skeleton(batch)

        def write_all() -> int:
            for recipient in batch.recipients:
                data = self.message(skeleton, batch, recipient, tokens[recipient.id])
                write_atomic(folder / f"{batch.notice_id}-{recipient.id}.eml", data)
            return len(batch.recipients)

        return Outcome(sent=await asyncio.to_thread(write_all))

    async def warm(self) -> None:
        if self._pool is not None:
            await self._pool.open()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
