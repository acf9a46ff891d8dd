"""A rate limit shared by every process, kept in Redis (GCRA: one key, one script)."""

from __future__ import annotations

import asyncio

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


class RateLimiter:
    """``rate`` requests a second across all processes, with bursts of up to ``burst``."""

    def __init__(self, redis: Redis, key: str, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.key = key
        self.interval_us = int(1_000_000 / rate)
        self.burst_us = self.interval_us * max(0, burst - 1)
        self._reserve = redis.register_script(_RESERVE)

    async def reserve(self) -> tuple[float, int]:
        """Take the next slot without waiting: (seconds until it, the slot in Redis time, µs)."""
        wait_us, slot_us = await self._reserve(
            keys=[self.key], args=[self.interval_us, self.burst_us]
        )
        return int(wait_us) / 1_000_000, int(slot_us)

    async def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        wait, _ = await self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait
