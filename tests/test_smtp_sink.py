"""The local SMTP sink (tests/smtp_sink.py), driven by aiosmtplib and by the stdlib's smtplib."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.smtp_sink import HOST, SmtpSink

SENDER = "notifier@city.example.jp"


def message(to: str | list[str], subject: str = "粗大ごみの収集日が変わります") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("12月から粗大ごみの収集日が変わります。\n", charset="utf-8")
    msg.add_alternative("<p>12月から粗大ごみの収集日が変わります。</p>\n", subtype="html")
    return msg


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@asynccontextmanager
async def client(sink: SmtpSink) -> AsyncIterator[aiosmtplib.SMTP]:
    smtp = aiosmtplib.SMTP(hostname=HOST, port=sink.port, start_tls=False, timeout=5)
    await smtp.connect()
    try:
        yield smtp
    finally:
        if smtp.is_connected:
            await smtp.quit()
        smtp.close()


async def lost(smtp: aiosmtplib.SMTP, within: float = 2.0) -> bool:
    """Whether the client sees its connection closed within ``within`` seconds."""
    deadline = time.monotonic() + within
    while smtp.is_connected and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return not smtp.is_connected


def test_smtplib_message_is_accepted_and_parsed(sink: SmtpSink) -> None:
    with smtplib.SMTP(HOST, sink.port, timeout=5) as smtp:
        code, features = smtp.ehlo()
        assert code == 250
        assert b"8BITMIME" in features and b"SMTPUTF8" in features
        assert smtp.send_message(message("resident1@example.jp")) == {}

    (envelope,) = sink.envelopes
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == ["resident1@example.jp"]
    assert envelope.at <= time.monotonic()
    (msg,) = sink.messages()
    assert msg["Subject"] == "粗大ごみの収集日が変わります"
    assert msg["To"] == "resident1@example.jp"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content() == "12月から粗大ごみの収集日が変わります。\n"
    assert "<p>12月から" in html.get_content()
    (same,) = sink.messages_to("RESIDENT1@example.jp")  # addresses compared in any case
    assert same.as_bytes() == msg.as_bytes()
    assert sink.messages_to("resident2@example.jp") == []


async def test_aiosmtplib_8bit_and_smtputf8(sink: SmtpSink) -> None:
    async with client(sink) as smtp:
        await smtp.ehlo()
        assert smtp.supports_extension("8bitmime") and smtp.supports_extension("smtputf8")
        errors, reply = await smtp.send_message(message("resident1@example.jp"))
        assert (errors, reply) == ({}, "OK")
        errors, _ = await smtp.send_message(message("住民@例え.jp"))  # sent with SMTPUTF8
        assert errors == {}

    first, second = sink.envelopes
    assert b"Content-Transfer-Encoding: 8bit" in first.data  # BODY=8BITMIME, not base64
    assert second.rcpt_tos == ["住民@例え.jp"]
    (msg,) = sink.messages_to("住民@例え.jp")
    assert msg["To"] == "住民@例え.jp"


async def test_reject_answers_that_rcpt_only(sink: SmtpSink) -> None:
    sink.reject["gone@example.jp"] = 550
    sink.reject["busy@example.jp"] = 450
    async with client(sink) as smtp:
        to = ["resident1@example.jp", "Gone@Example.jp", "busy@example.jp"]
        errors, reply = await smtp.send_message(message(to))
        assert reply == "OK"
        assert {k: (v.code, v.message) for k, v in errors.items()} == {
            "Gone@Example.jp": (550, "5.1.1 User unknown"),
            "busy@example.jp": (450, "4.2.1 Mailbox busy"),
        }

        # every recipient refused: an exception, and the connection is still usable
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await smtp.send_message(message(["gone@example.jp", "busy@example.jp"]))
        assert [(r.recipient, r.code) for r in refused.value.recipients] == [
            ("gone@example.jp", 550),
            ("busy@example.jp", 450),
        ]
        del sink.reject["busy@example.jp"]  # the mailbox is free again
        errors, _ = await smtp.send_message(message("busy@example.jp"))
        assert errors == {}

    first, second = sink.envelopes
    assert first.rcpt_tos == ["resident1@example.jp"]
    assert second.rcpt_tos == ["busy@example.jp"]
    assert sink.messages_to("gone@example.jp") == []
    assert len(sink.messages_to("busy@example.jp")) == 1
    assert sink.connections == 1


def test_reject_with_smtplib(sink: SmtpSink) -> None:
    sink.reject["gone@example.jp"] = 550
    with smtplib.SMTP(HOST, sink.port, timeout=5) as smtp:
        refused = smtp.send_message(message(["resident1@example.jp", "gone@example.jp"]))
        assert refused == {"gone@example.jp": (550, b"5.1.1 User unknown")}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as every:
            smtp.send_message(message("gone@example.jp"))
        assert every.value.recipients == {"gone@example.jp": (550, b"5.1.1 User unknown")}
    assert [e.rcpt_tos for e in sink.envelopes] == [["resident1@example.jp"]]


async def test_delay_overlaps_across_connections() -> None:
    with SmtpSink(delay=0.2) as sink:

        async def two_messages(n: int) -> None:
            async with client(sink) as smtp:
                for i in range(2):
                    await smtp.send_message(message(f"resident{n}-{i}@example.jp"))

        started = time.monotonic()
        await asyncio.gather(*(two_messages(n) for n in range(5)))
        elapsed = time.monotonic() - started

    assert len(sink.envelopes) == 10
    assert sink.connections == 5
    # two messages in sequence on each connection: at least 2 × 0.2 s, and the five
    # connections overlap (in sequence it would be 10 × 0.2 s = 2 s)
    assert 0.4 <= elapsed < 1.0
    times = sorted(e.at for e in sink.envelopes)
    assert times[4] - times[0] < 0.15  # the first five were accepted together
    assert times[5] - times[0] >= 0.19  # the next five one delay later


async def test_go_down_drops_connections_and_refuses_new_ones(sink: SmtpSink) -> None:
    port = sink.port
    async with client(sink) as smtp:
        await smtp.send_message(message("resident1@example.jp"))
        assert sink.open_connections == 1

        sink.go_down()
        assert not sink.is_up
        assert sink.open_connections == 0
        assert await lost(smtp)  # aiosmtplib notices the close on its own
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.send_message(message("resident2@example.jp"))
        with pytest.raises(aiosmtplib.SMTPConnectError):  # connection refused
            await smtp.connect()
        with pytest.raises(ConnectionRefusedError):
            smtplib.SMTP(HOST, port, timeout=5)

        sink.come_back()
        assert sink.is_up and sink.port == port
        await smtp.connect()
        errors, _ = await smtp.send_message(message("resident2@example.jp"))
        assert errors == {}

    assert [e.rcpt_tos for e in sink.envelopes] == [
        ["resident1@example.jp"],
        ["resident2@example.jp"],
    ]
    with smtplib.SMTP(HOST, port, timeout=5) as again:
        assert again.noop()[0] == 250
    assert sink.connections == 3


async def test_going_down_during_the_delay_loses_that_message() -> None:
    with SmtpSink(delay=0.3) as sink:
        async with client(sink) as smtp:
            sending = asyncio.create_task(smtp.send_message(message("resident1@example.jp")))
            await asyncio.sleep(0.1)  # the sink has the DATA and is in its delay
            await asyncio.to_thread(sink.go_down)
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await sending
        assert sink.envelopes == []


async def test_connection_counter(sink: SmtpSink) -> None:
    assert sink.connections == 0  # the controller's own start-up probe is not counted
    async with client(sink) as smtp:
        for n in range(3):
            await smtp.send_message(message(f"resident{n}@example.jp"))
        assert (sink.connections, sink.open_connections) == (1, 1)
    async with client(sink) as first, client(sink) as second:
        await first.send_message(message("resident3@example.jp"))
        await second.send_message(message("resident4@example.jp"))
        assert sink.open_connections == 2
    assert sink.connections == 3
    assert len(sink.envelopes) == 5

    sink.drop_connections()  # nothing open: nothing happens, and it still listens
    async with client(sink) as smtp:
        sink.drop_connections()
        assert await lost(smtp)
        assert sink.is_up
        await smtp.connect()
        await smtp.send_message(message("resident5@example.jp"))
    assert sink.connections == 5
    assert len(sink.envelopes) == 6


def test_stop_and_errors() -> None:
    sink = SmtpSink()
    with pytest.raises(RuntimeError, match="not started"):
        sink.go_down()
    port = sink.start()
    assert port == sink.port > 0
    with pytest.raises(RuntimeError, match="already started"):
        sink.start()
    open_client = smtplib.SMTP(HOST, port, timeout=5)
    try:
        sink.stop()  # closes the client's connection too
        with pytest.raises(smtplib.SMTPServerDisconnected):
            open_client.noop()
    finally:
        open_client.close()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(HOST, port, timeout=5)
    sink.stop()  # twice is fine
