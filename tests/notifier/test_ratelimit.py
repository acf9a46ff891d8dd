"""The shared rate limit holds across concurrent callers and across clients."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from redis.asyncio import Redis

from notifier.ratelimit import RateLimiter
from notifier.runtime import Runtime
from tests.conftest import REDIS_URL


async def test_callers_in_two_clients_share_one_rate(runtime: Runtime) -> None:
    other = Redis.from_url(REDIS_URL)
    key = runtime.keys.scratch("limit")
    limiters = [RateLimiter(runtime.redis, key, rate=200), RateLimiter(other, key, rate=200)]
    started = time.monotonic()
    woken: list[float] = []
    slots: list[int] = []

    async def call(limiter: RateLimiter) -> None:
        wait, slot = await limiter.reserve()
        slots.append(slot)
        await asyncio.sleep(wait)
        woken.append(time.monotonic() - started)

    await asyncio.gather(*(call(limiters[i % 2]) for i in range(100)))
    await other.aclose()
    # 100 slots at 200/s: the last caller goes about 0.5 s in, not at once
    assert max(woken) >= 0.45
    # and the slots handed out, in Redis's time (what the limiter decides, not when a
    # busy event loop happened to wake each caller), are never closer than 5 ms: no
    # trailing window of any length holds more than its share plus the one at its edge
    slots.sort()
    assert min(b - a for a, b in itertools.pairwise(slots)) >= 5000
    for first in range(len(slots) - 20):
        assert slots[first + 20] - slots[first] >= 100_000


async def test_a_burst_goes_at_once(runtime: Runtime) -> None:
    limiter = RateLimiter(runtime.redis, runtime.keys.scratch("burst"), rate=10, burst=5)
    waits = [await limiter.acquire() for _ in range(5)]
    assert waits == [0, 0, 0, 0, 0]
    assert await limiter.acquire() > 0.05


@pytest.mark.parametrize("late", [0.01, None])
async def test_callers_held_up_together_do_not_go_out_together(
    runtime: Runtime, late: float | None
) -> None:
    """Two callers wait for their slots (50 ms apart) while the event loop is blocked for
    0.3 s: both wake late at once. With ``late``, each gives its slot up and takes a new
    one, so they still go out 50 ms apart; without, they go out together."""
    limiter = RateLimiter(runtime.redis, runtime.keys.scratch(f"late-{late}"), rate=20, late=late)
    await limiter.acquire()  # the first slot: now
    left: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        left.append(time.monotonic())

    callers = [asyncio.create_task(call()) for _ in range(2)]
    await asyncio.sleep(0.01)  # both have their slots, 50 and 100 ms from the first
    time.sleep(0.3)  # the event loop is held up past both
    await asyncio.gather(*callers)
    apart = abs(left[1] - left[0])
    if late is None:
        assert apart < 0.02 and limiter.missed == 0
    else:
        assert apart >= 0.045 and limiter.missed == 2


async def test_a_redis_that_forgot_the_script_still_hands_out_the_next_slot(
    runtime: Runtime,
) -> None:
    """A restarted or promoted Redis has no scripts: rate.lua is loaded again and run once,
    and the slot it gives follows the one before (the limit's key survived)."""
    limiter = RateLimiter(runtime.redis, runtime.keys.scratch("forgot"), rate=0.1)  # 10 s
    _, first = await limiter.reserve()
    await runtime.redis.script_flush()
    wait, second = await limiter.reserve()
    assert second == first + 10_000_000 and wait > 0
    _, third = await limiter.reserve()
    assert third == second + 10_000_000  # run once on the reload: one slot taken, not two
