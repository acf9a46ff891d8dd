"""The shared rate limit holds across concurrent callers and across clients."""

from __future__ import annotations

import asyncio
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
    stamps: list[float] = []

    async def call(limiter: RateLimiter) -> None:
        await limiter.acquire()
        stamps.append(time.monotonic() - started)

    await asyncio.gather(*(call(limiters[i % 2]) for i in range(100)))
    await other.aclose()
    # 100 slots at 200/s: the last is granted about 0.5 s in, not at once
    assert max(stamps) >= 0.45
    # and no 1/10 s window holds more than its share (20) plus the one at its edge
    for start in [i / 100 for i in range(50)]:
        assert sum(1 for s in stamps if start <= s < start + 0.1) <= 22


async def test_a_burst_goes_at_once(runtime: Runtime) -> None:
    limiter = RateLimiter(runtime.redis, runtime.keys.scratch("burst"), rate=10, burst=5)
    waits = [await limiter.acquire() for _ in range(5)]
    assert waits == [0, 0, 0, 0, 0]
    assert await limiter.acquire() > 0.05
