"""The SMTP pool's gate: urgent senders overtake routine ones waiting for a connection."""

from __future__ import annotations

import asyncio

from channels.smtp_pool import Gate


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
