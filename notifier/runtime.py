"""What every part of the service shares, made once at start-up and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from notifier import redis_client
from notifier.accounts import AccountStore
from notifier.alerts import AlertDesk
from notifier.audit import AuditLog
from notifier.config import Settings
from notifier.drafting import DraftDesk
from notifier.jma_drafts import DraftStore
from notifier.keys import Keys
from notifier.metrics import Metrics
from notifier.redis_client import connect
from notifier.render import Templates
from notifier.store import NoticeStore
from notifier.subscribers import SubscriberStore
from notifier.tokens import TokenStore


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    keys: Keys
    metrics: Metrics
    templates: Templates
    notices: NoticeStore
    subscribers: SubscriberStore
    tokens: TokenStore
    accounts: AccountStore
    alerts: AlertDesk
    drafts: DraftDesk  # the JMA's drafts, for the desk to approve
    audit: AuditLog

    @classmethod
    def open(cls, settings: Settings, metrics: Metrics | None = None) -> Runtime:
        # a blocking pool: at a burst (every channel at full concurrency) a task waits for
        # a free connection instead of failing with MaxConnectionsError
        redis = connect(settings)
        keys = Keys(settings.redis_prefix)
        alerts = AlertDesk(redis, keys, settings)
        return cls(
            settings=settings,
            redis=redis,
            keys=keys,
            metrics=metrics or Metrics(),
            templates=Templates(settings),
            notices=NoticeStore(redis, keys, settings.min_replicas, settings.redis_replica_timeout),
            subscribers=SubscriberStore(redis, keys, settings),
            tokens=TokenStore(redis, keys),
            accounts=AccountStore(redis, keys),
            alerts=alerts,
            drafts=DraftDesk(DraftStore(redis, keys, settings), alerts, settings),
            audit=AuditLog(redis, keys),
        )

    async def close(self) -> None:
        await redis_client.close(self.redis)
