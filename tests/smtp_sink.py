"""A real SMTP server on 127.0.0.1 for tests and benchmarks: aiosmtpd in a thread of its own.

It speaks real SMTP (ESMTP with 8BITMIME and SMTPUTF8, no AUTH and none required, no TLS),
so a client is driven exactly as it would be against a relay::

    with SmtpSink(delay=0.02) as sink:          # 20 ms per message at DATA, like a relay's queue
        sink.reject["gone@example.jp"] = 550    # "550 5.1.1 User unknown" to that RCPT only
        ...send to 127.0.0.1:sink.port...
        sink.envelopes                          # every accepted message, in order of acceptance
        sink.messages_to("resident1@example.jp")
        sink.go_down()                          # refuse new connections, drop the open ones
        sink.come_back()                        # listen again on the same port
        sink.connections                        # SMTP sessions opened so far

A message is recorded before its ``250 OK`` is sent: once a client has the 250, the envelope
is in ``envelopes``. The delay is slept in the server's own event loop, so messages on
concurrent connections overlap as they would on a relay; a message whose connection drops
during the delay is not recorded (the client never got its 250).

The server runs in its own thread and loop (aiosmtpd's ``Controller``); ``envelopes`` is
appended to from that thread and is meant to be read by the test between its own steps.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

HOST = "127.0.0.1"
SERVER_NAME = "smtp-sink.localhost"  # also spares aiosmtpd a getfqdn() per connection
# the text answered for the codes a test puts in SmtpSink.reject
REPLIES = {
    421: "421 4.3.2 Service not available, closing transmission channel",
    450: "450 4.2.1 Mailbox busy",
    451: "451 4.3.0 Local error in processing",
    452: "452 4.2.2 Mailbox full",
    550: "550 5.1.1 User unknown",
    551: "551 5.1.6 User not local",
    552: "552 5.2.2 Mailbox full",
    553: "553 5.1.3 Mailbox name not allowed",
    554: "554 5.7.1 Recipient address rejected",
}


def reply_for(code: int) -> str:
    """The SMTP reply line for a rejection code."""
    if code in REPLIES:
        return REPLIES[code]
    if not 400 <= code < 600:
        raise ValueError(f"a rejection must be a 4xx or 5xx code, not {code}")
    return f"{code} {code // 100}.0.0 Rejected by the test"


@dataclass(frozen=True)
class Envelope:
    """One accepted message: the envelope as given at MAIL/RCPT, the DATA bytes as sent.

    ``rcpt_tos`` holds only the recipients the sink accepted; ``at`` is ``time.monotonic()``
    when the message was accepted (after the delay).
    """

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float

    def message(self) -> EmailMessage:
        """The message parsed with ``email.policy.default``, its CRLF line ends made LF."""
        data = self.data.replace(b"\r\n", b"\n")
        return cast("EmailMessage", email.message_from_bytes(data, policy=email.policy.default))


class _Handler:
    """aiosmtpd's hooks: rejections at RCPT, the delay and the record at DATA."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        code = self.sink.reject.get(address.lower())
        if code is None:  # tolerate keys a test did not lower-case
            lowered = {k.lower(): v for k, v in self.sink.reject.items()}
            code = lowered.get(address.lower())
        if code is not None:
            return reply_for(code)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        if self.sink.delay > 0:
            await asyncio.sleep(self.sink.delay)
        data = envelope.original_content or b""
        self.sink.envelopes.append(
            Envelope(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(data),
                at=time.monotonic(),
            )
        )
        return "250 OK"


class _Server(SMTP):
    """aiosmtpd's SMTP protocol, one per connection, that tells the sink it opened and closed."""

    def __init__(self, sink: SmtpSink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection (not the same one after STARTTLS)
            self.sink._opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._closed(self)
        super().connection_lost(error)


class _Controller(Controller):
    """aiosmtpd's threaded controller, on a free port it picks, able to stop and relisten."""

    def __init__(self, sink: SmtpSink) -> None:
        super().__init__(
            _Handler(sink),
            hostname=HOST,
            port=0,
            server_hostname=SERVER_NAME,
            enable_SMTPUTF8=True,  # 8BITMIME is advertised whenever decode_data is off
            decode_data=False,
            ready_timeout=10.0,
        )
        self.sink = sink

    def factory(self) -> SMTP:
        return _Server(self.sink, cast("_Handler", self.handler), **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        async def listen() -> asyncio.AbstractServer:
            # asyncio sets SO_REUSEADDR: listening again on the same port works at once
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return listen()


class SmtpSink:
    """A local SMTP server that accepts, records, rejects and goes down on request."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.port = 0
        self.envelopes: list[Envelope] = []
        self.reject: dict[str, int] = {}
        self.connections = 0
        self._open: set[_Server] = set()
        self._controller: _Controller | None = None
        self._down = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> int:
        """Listen on 127.0.0.1 on a free port; the port."""
        if self._controller is not None:
            raise RuntimeError("the sink is already started")
        controller = _Controller(self)
        controller.start()
        self._controller = controller
        self.port = controller.port
        # Controller.start() opened one connection itself (to check the server answers)
        # and read the banner, so that connection was counted already: not a session.
        self.connections = 0
        self._down = False
        return self.port

    def stop(self) -> None:
        """Drop every connection, stop listening and end the server's thread."""
        controller = self._controller
        if controller is None:
            return
        self._call(self._drop(close_listener=True))
        controller.stop()
        self._controller = None

    def go_down(self) -> None:
        """Stop listening (connections are refused) and close every open connection.

        What was received stays in ``envelopes``; a message still in its delay is lost.
        """
        self._require()
        if self._down:
            return
        self._call(self._drop(close_listener=True))
        self._down = True

    def come_back(self) -> None:
        """Listen again on the same port after ``go_down()``."""
        controller = self._require()
        if not self._down:
            return
        controller.server = self._call(controller._create_server())
        self._down = False

    def drop_connections(self) -> None:
        """Close every open connection but keep listening (a relay that timed them out)."""
        self._require()
        self._call(self._drop(close_listener=False))

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what was received ---------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """How many client connections are open now."""
        return len(self._open)

    @property
    def is_up(self) -> bool:
        return self._controller is not None and not self._down

    def messages(self) -> list[EmailMessage]:
        """Every accepted message, parsed with ``email.policy.default`` (line ends LF)."""
        return [e.message() for e in list(self.envelopes)]

    def messages_to(self, address: str) -> list[EmailMessage]:
        """The accepted messages whose envelope recipients include ``address`` (any case)."""
        wanted = address.lower()
        return [
            e.message() for e in list(self.envelopes) if wanted in (r.lower() for r in e.rcpt_tos)
        ]

    # --- in the server's thread -------------------------------------------------------

    def _opened(self, server: _Server) -> None:
        self.connections += 1
        self._open.add(server)

    def _closed(self, server: _Server) -> None:
        self._open.discard(server)

    async def _drop(self, close_listener: bool) -> None:
        controller = self._require()
        listener = controller.server
        if close_listener and listener is not None:
            listener.close()
        sessions = list(self._open)
        for server in sessions:
            if server.transport is not None:
                server.transport.close()
        # let every connection be lost and every session task end before returning
        tasks = [s._handler_coroutine for s in sessions if s._handler_coroutine is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        deadline = time.monotonic() + 5.0
        while self._open.intersection(sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        if close_listener and listener is not None:
            await listener.wait_closed()

    def _require(self) -> _Controller:
        if self._controller is None:
            raise RuntimeError("the sink is not started")
        return self._controller

    def _call(self, coro: Any) -> Any:
        """Run a coroutine in the server's loop and wait for its result."""
        controller = self._require()
        if threading.current_thread() is controller._thread:
            raise RuntimeError("SmtpSink's methods are called from the test, not the server")
        return asyncio.run_coroutine_threadsafe(coro, controller.loop).result(timeout=10.0)
