"""The audit log: every state-changing action, append-only, in a Redis stream.

An entry says who (the token's name and role), what (an action and its target), when,
from where (the client's address) and the outcome. Tokens, passwords and personal data
never go in: targets are ids.
"""

from __future__ import annotations

import getpass
import time
from typing import Any, cast

from redis.asyncio import Redis

from notifier.keys import Keys
from notifier.streams import Entry, as_text


class AuditLog:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def record(
        self,
        who: str,
        role: str,
        action: str,
        target: str,
        outcome: str,
        source: str,
        **detail: str | int | float,
    ) -> None:
        fields: dict[Any, Any] = {
            "at": time.time(),
            "who": who,
            "role": role,
            "action": action,
            "target": target,
            "outcome": outcome,
            "from": source,
            **detail,
        }
        await self.redis.xadd(self.keys.audit, fields)

    async def resident(self, action: str, subscriber_id: str, source: str) -> None:
        """A resident's own change (subscribing, leaving): the subscriber's id, no address."""
        await self.record("resident", "resident", action, subscriber_id, "ok", source)

    async def local(self, action: str, target: str, outcome: str, **detail: str | int) -> None:
        """An operator's command on the service's machine (`notifier token …`)."""
        user = getpass.getuser()
        await self.record(f"cli:{user}", "operator", action, target, outcome, "cli", **detail)

    async def recent(self, count: int = 100, before: str = "+") -> list[dict[str, Any]]:
        rows = cast(
            "list[Entry]", await self.redis.xrevrange(self.keys.audit, max=before, count=count)
        )
        entries = []
        for entry_id, fields in rows:
            item: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
            item["at"] = float(item["at"])
            entries.append({"id": as_text(entry_id), **item})
        return entries
