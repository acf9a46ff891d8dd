"""A rate limit shared by every process, kept in Redis (GCRA: one key, one script)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

# KEYS: the limit's key.  ARGV: emission interval (µs), burst tolerance (µs)
# Reserves the next slot; returns how many µs to wait for it and the slot (Redis time, µs).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - burst
if wait < 0 then wait = 0 end
local ttl = math.ceil((tat + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', ttl)
return {wait, string.format('%d', now + wait)}
"""


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
        self._reserve = redis.register_script(_RESERVE)

    async def reserve(self) -> tuple[float, int]:
        """Take the next slot without waiting: (seconds until it, the slot in Redis time, µs)."""
        wait_us, slot_us = await self._reserve(
            keys=[self.key], args=[self.interval_us, self.burst_us]
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
