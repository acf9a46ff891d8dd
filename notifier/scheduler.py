"""The scheduler: releases scheduled notices onto the intake stream when they are due,
and builds the printed digest on NOTIFIER_DIGEST_CRON.

Schedules live in Redis (a sorted set by publish time), so they survive restarts
of any process; APScheduler drives the periodic release inside the service. The digest
job also runs once at start: a digest that fell due while the service was down is built
then (Redis remembers which weeks were built).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from notifier.config import Settings
from notifier.keys import Keys
from notifier.logs import event
from notifier.states import Scripts

log = logging.getLogger("notifier.scheduler")


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        keys: Keys,
        interval: float = 1.0,
        digest: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.interval = interval
        self.digest = digest
        self.scripts = Scripts(redis)
        self._aps = AsyncIOScheduler(timezone=settings.tz)

    async def release_due(self) -> list[str]:
        """Move every due notice to intake, once, even if several schedulers run."""
        try:
            released = await self.scripts.run(
                "release",
                scheduled_key=self.keys.scheduled,
                intake_key=self.keys.intake,
                now=time.time(),
                notice_prefix=self.keys.notice(""),
            )
        except RedisError as e:
            event(log, "scheduler.redis_error", logging.WARNING, error=repr(e))
            return []
        ids = [i.decode() for i in released]
        for notice_id in ids:
            event(log, "notice.released", notice=notice_id)
        return ids

    def start(self) -> None:
        self._aps.add_job(
            self.release_due,
            "interval",
            seconds=self.interval,
            id="release_due",
            max_instances=1,
            coalesce=True,
        )
        if self.digest is not None:
            cron = CronTrigger.from_crontab(self.settings.digest_cron, timezone=self.settings.tz)
            self._aps.add_job(self._digest, cron, id="digest", max_instances=1, coalesce=True)
            self._aps.add_job(self._digest, id="digest_catch_up")  # at once: one missed?
        self._aps.start()

    async def _digest(self) -> None:
        assert self.digest is not None
        try:
            await self.digest()
        except Exception as e:  # logged; the next run (or a restart) tries again
            event(log, "digest.failed", logging.ERROR, error=repr(e))

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
