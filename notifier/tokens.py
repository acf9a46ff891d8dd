"""API tokens: shown once at creation, stored only as a hash, revocable by name."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from notifier.keys import Keys

if TYPE_CHECKING:  # redis loads when a store is used: `notifier --help` reads ROLES only
    from redis.asyncio import Redis

ROLES = ("staff", "emergency", "admin")
# what each role may do, beyond what it is named for
GRANTS = {
    "staff": {"staff"},
    "emergency": {"staff", "emergency"},
    "admin": {"staff", "emergency", "admin"},
}


@dataclass(frozen=True)
class Token:
    name: str
    role: str
    created: float

    def may(self, role: str) -> bool:
        return role in GRANTS[self.role]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, role: str, name: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.isprintable():
            raise ValueError("name must be 1 to 64 printable characters")
        token = "ntk_" + secrets.token_urlsafe(32)
        record = json.dumps({"role": role, "digest": digest(token), "created": time.time()})
        if not await self.redis.hsetnx(self.keys.tokens, name, record):
            raise ValueError(f"a token named {name!r} exists; revoke it first")
        await self.redis.hset(self.keys.token_hashes, digest(token), name)
        return token

    async def check(self, token: str) -> Token | None:
        return await self.check_digest(digest(token))

    async def check_digest(self, token_digest: str) -> Token | None:
        """The token whose hash is ``token_digest``, if it has not been revoked."""
        from notifier.streams import as_text

        name = await self.redis.hget(self.keys.token_hashes, token_digest)
        if name is None:
            return None
        record = await self.redis.hget(self.keys.tokens, name)
        if record is None:
            return None
        data = json.loads(record)
        return Token(as_text(name), data["role"], data["created"])

    async def list(self) -> list[Token]:
        from notifier.streams import as_text

        rows = await self.redis.hgetall(self.keys.tokens)
        tokens = [
            Token(as_text(name), json.loads(r)["role"], json.loads(r)["created"])
            for name, r in rows.items()
        ]
        return sorted(tokens, key=lambda t: t.created)

    async def revoke(self, name: str) -> bool:
        record = await self.redis.hget(self.keys.tokens, name)
        if record is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.token_hashes, json.loads(record)["digest"])
            pipe.hdel(self.keys.tokens, name)
            await pipe.execute()
        return True
