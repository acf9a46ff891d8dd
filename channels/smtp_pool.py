"""A small pool of long-lived SMTP connections (aiosmtplib), each used for many messages."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib

from notifier.config import Settings

DROPPED = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, ConnectionError)


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
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
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
    ) -> dict[str, aiosmtplib.SMTPResponse]:
        """Send one message to one recipient; a connection found dropped is reopened and
        the message sent on the new one (it was not accepted on the old)."""
        async with self._slots.slot(urgent):
            for attempt in (1, 2):
                smtp = self._idle.get_nowait() if not self._idle.empty() else self._new()
                try:
                    if not smtp.is_connected:
                        await smtp.connect()
                    if isinstance(message, bytes):
                        errors, _ = await smtp.sendmail(sender, [recipient], message)
                    else:
                        errors, _ = await smtp.send_message(
                            message, sender=sender, recipients=[recipient]
                        )
                except DROPPED:
                    await _close(smtp)
                    if attempt == 2:
                        raise
                    continue
                except aiosmtplib.SMTPRecipientsRefused:
                    self._idle.put_nowait(smtp)  # the session is fine; the address is not
                    raise
                except BaseException:
                    await _close(smtp)
                    raise
                self._idle.put_nowait(smtp)
                return errors
        raise AssertionError("unreachable")

    async def close(self) -> None:
        while not self._idle.empty():
            await _close(self._idle.get_nowait())


async def _close(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        if smtp.is_connected:
            await smtp.quit()
    with contextlib.suppress(Exception):
        smtp.close()
