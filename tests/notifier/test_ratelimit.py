"""The shared rate limit holds across concurrent callers and across clients."""

from __future__ import annotations

import asyncio
import itertools
import time

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
