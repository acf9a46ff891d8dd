"""The SMTP pool: urgent senders overtake routine ones waiting for a connection; refusals,
messages in and not in SMTP form, and connections opened ahead, against the tests' sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosmtplib
import pytest

from channels.smtp_pool import Gate, SmtpPool
from tests.conftest import email_settings
from tests.smtp_sink import SmtpSink

SENDER = "oshirase@city.nerima.example.jp"


async def test_urgent_waiters_go_first_then_in_order_of_arrival() -> None:
    gate = Gate(1)
    order: list[str] = []
    release_first = asyncio.Event()

    async def hold(name: str, urgent: bool, until: asyncio.Event | None = None) -> None:
        async with gate.slot(urgent):
            order.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(hold("first", False, release_first))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(hold(name, urgent))
        for name, urgent in [("routine-1", False), ("routine-2", False), ("alert", True)]
    ]
    cancelled = asyncio.create_task(hold("cancelled", True))
    await asyncio.sleep(0)
    cancelled.cancel()  # a waiter that gives up is passed over, and takes no slot
    await asyncio.sleep(0)
    release_first.set()
    await asyncio.gather(first, *waiting)
    assert order == ["first", "alert", "routine-1", "routine-2"]
    async with asyncio.timeout(1):  # every slot came back: the gate is free again
        async with gate.slot(False):
            pass


async def test_size_many_holders_at_once() -> None:
    gate = Gate(3)
    inside = 0
    most = 0

    async def hold() -> None:
        nonlocal inside, most
        async with gate.slot(False):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(hold() for _ in range(10)))
    assert most == 3


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
async def pool(tmp_path: Path, prefix: str, sink: SmtpSink) -> AsyncIterator[SmtpPool]:
    opened = SmtpPool(email_settings(tmp_path, prefix, sink.port), 2)
    yield opened
    await opened.close()


async def test_a_refused_recipient_leaves_the_connection_in_use(
    pool: SmtpPool, sink: SmtpSink
) -> None:
    sink.reject["gone@example.jp"] = 550
    message = b"Subject: test\r\n\r\nhello\r\n"
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
        await pool.send(message, SENDER, "gone@example.jp")
    assert refused.value.code == 550
    await pool.send(message, SENDER, "here@example.jp")
    assert [e.rcpt_tos for e in sink.envelopes] == [["here@example.jp"]]
    assert sink.connections == 1  # reset, not reopened


async def test_a_message_not_in_smtp_form_is_made_so_on_the_way(
    pool: SmtpPool, sink: SmtpSink
) -> None:
    await pool.send(b"Subject: dots\n\n.leading dot\nbare LF\n", SENDER, "a@example.jp")
    await pool.send(b"Subject: ready\r\n\r\nCRLF\r\n", SENDER, "b@example.jp")
    first, second = (e.data for e in sink.envelopes)
    assert first == b"Subject: dots\r\n\r\n.leading dot\r\nbare LF\r\n"  # undoubled by the sink
    assert second == b"Subject: ready\r\n\r\nCRLF\r\n"


async def test_open_makes_the_connections_ahead_and_no_more(pool: SmtpPool, sink: SmtpSink) -> None:
    await pool.open()
    assert sink.open_connections == 2
    await asyncio.gather(
        *(pool.send(b"Subject: x\r\n\r\ny\r\n", SENDER, f"r{i}@example.jp") for i in range(6))
    )
    assert sink.connections == 2 and len(sink.envelopes) == 6


async def test_open_leaves_a_server_that_is_down_to_the_first_send(
    pool: SmtpPool, sink: SmtpSink
) -> None:
    sink.go_down()
    await pool.open()  # no error: the sends will meet it, and retry
    sink.come_back()
    await pool.send(b"Subject: x\r\n\r\ny\r\n", SENDER, "r@example.jp")
    assert len(sink.envelopes) == 1
