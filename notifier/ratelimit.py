"""A rate limit shared by every process, kept in Redis (GCRA: one key, one script,
notifier/lua/rate.lua)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from notifier.states import Scripts

MISSES = 5  # slots given up in a row before a late one is used all the same


class RateLimiter:
    """``rate`` requests a second across all processes, with bursts of up to ``burst``.

    ``late``: a caller woken more than this many seconds after its slot (its event loop
    was busy, its process not scheduled) gives the slot up and takes another, so that
    callers held up together do not go out together: every request then leaves within
    ``late`` of a slot, and any trailing second holds at most rate × (1 + late) + 1."""

    def __init__(
        self, redis: Redis, key: str, rate: float, burst: int = 1, late: float | None = None
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.key = key
        self.interval_us = int(1_000_000 / rate)
        self.burst_us = self.interval_us * max(0, burst - 1)
        self.late = late
        self.missed = 0  # slots given up, since this limiter was made
        self._scripts = Scripts(redis)

    async def reserve(self) -> tuple[float, int]:
        """Take the next slot without waiting: (seconds until it, the slot in Redis time, µs)."""
        wait_us, slot_us = await self._scripts.run(
            "rate", limit_key=self.key, interval_us=self.interval_us, burst_us=self.burst_us
        )
        return int(wait_us) / 1_000_000, int(slot_us)

    async def acquire(self) -> float:
        """Wait for a slot; returns the seconds the limiter asked it to wait."""
        waited = 0.0
        for _ in range(MISSES):
            asked = time.monotonic()  # no later than Redis gave the slot: lateness is not
            wait, _ = await self.reserve()  # underestimated, whatever held the answer up
            waited += wait
            if wait > 0:
                await asyncio.sleep(wait)
            if self.late is None or time.monotonic() - (asked + wait) <= self.late:
                break
            self.missed += 1
        return waited
