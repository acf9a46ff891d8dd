"""A small pool of long-lived SMTP connections (aiosmtplib), each used for many messages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
from aiosmtplib import SMTPStatus
from aiosmtplib.email import flatten_message, parse_address

from notifier.config import Settings

DROPPED = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, ConnectionError)
_PLAIN_ADDRESS = re.compile(r'[^\s<>"()\[\]\\,;:@]+@[^\s<>"()\[\]\\,;:@]+')
# the server's answer to one mail transaction (MAIL, RCPT or DATA); the session goes on
REFUSED = (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)


class Gate:
    """Up to ``size`` holders at once; of those waiting, urgent ones go first (then in
    order of arrival), so an alert's mail overtakes a routine notice's queued messages."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (0 if urgent else 1, next(self._arrivals), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given the slot, then cancelled
                self._release()
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the slot passes straight to the next in line
                return
        self._free += 1


class SmtpPool:
    """Up to ``size`` connections, opened when first needed and reopened when dropped."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self._size = size
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = Gate(size)

    def _new(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        assert s.smtp_host is not None
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=password,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
        )

    async def send(
        self, message: EmailMessage | bytes, sender: str, recipient: str, urgent: bool = False
    ) -> None:
        """Send one message to one recipient. A refused transaction raises the server's
        reply (one of ``REFUSED``) and leaves the connection reset and in the pool; a
        connection found dropped is reopened and the message sent on the new one (it was
        not accepted on the old)."""
        data = message if isinstance(message, bytes) else flatten_message(message)
        async with self._slots.slot(urgent):
            for attempt in (1, 2):
                smtp = self._idle.pop() if self._idle else self._new()
                try:
                    await _ready(smtp)
                    await _transaction(smtp, sender, recipient, data)
                except DROPPED:
                    await _close(smtp)
                    if attempt == 2:
                        raise
                    continue
                except REFUSED:
                    await self._reset(smtp)  # the session is fine; the message is not
                    raise
                except BaseException:
                    await _close(smtp)
                    raise
                self._idle.append(smtp)
                return

    async def open(self) -> None:
        """Open the connections before the first message needs one (an alert's first mail
        does not wait for them); one the server does not take now is left to that send."""

        async def one() -> None:
            async with self._slots.slot(urgent=False):
                smtp = self._idle.pop() if self._idle else self._new()
                try:
                    await _ready(smtp)
                except (aiosmtplib.SMTPException, OSError):
                    await _close(smtp)
                    return
                self._idle.append(smtp)

        await asyncio.gather(*(one() for _ in range(self._size)))

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """Clear a refused transaction's envelope and keep the connection, if it still works."""
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await _close(smtp)
        else:
            self._idle.append(smtp)

    async def close(self) -> None:
        while self._idle:
            await _close(self._idle.pop())


async def _ready(smtp: aiosmtplib.SMTP) -> None:
    """Connected (with STARTTLS and AUTH when configured) and greeted."""
    if not smtp.is_connected:
        await smtp.connect()
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()


async def _transaction(smtp: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """MAIL, RCPT, DATA for one recipient, as aiosmtplib's ``sendmail`` does them but
    without its work per message that a pool sending one prepared message after another
    need not repeat: a parse of each address, twice, and two regular-expression passes
    over the message (to count its size, and to send it), which cost more than the rest
    of the send together."""
    options = [b"SIZE=%d" % len(data)] if smtp.supports_extension("size") else []
    if not (sender + recipient).isascii():
        if not smtp.supports_extension("smtputf8"):
            reason = "5.6.7 The address needs SMTPUTF8, which the server does not offer"
            raise aiosmtplib.SMTPRecipientRefused(553, reason, recipient)
        options.append(b"SMTPUTF8")
    reply = await smtp.execute_command(b"MAIL", b"FROM:" + _mailbox(sender), *options)
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    reply = await smtp.execute_command(b"RCPT", b"TO:" + _mailbox(recipient))
    if reply.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
    if not _in_smtp_form(data) or smtp.protocol is None:
        await smtp.data(data)
        return
    reply = await smtp.execute_command(b"DATA")
    if reply.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    smtp.protocol.write(data + b".\r\n")
    reply = await smtp.protocol.read_response(timeout=smtp.timeout)
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)


@functools.lru_cache(maxsize=64)  # the sender's, mostly
def _mailbox(address: str) -> bytes:
    """``<address>`` for MAIL and RCPT: a plain address (the form the subscription form
    stores) as it is, anything else as aiosmtplib's parser makes it (or refuses it)."""
    if not _PLAIN_ADDRESS.fullmatch(address):
        address = parse_address(address)
    return f"<{address}>".encode()


def _in_smtp_form(data: bytes) -> bool:
    """Whether a message can go after DATA as it is: every line ended by CRLF, none
    starting with a period (which would need doubling)."""
    return (
        data.endswith(b"\r\n")
        and not data.startswith(b".")
        and b"\r\n." not in data
        and data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    )


async def _close(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        if smtp.is_connected:
            await smtp.quit()
    with contextlib.suppress(Exception):
        smtp.close()
