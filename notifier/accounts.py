"""Staff accounts for the console: a name, a role and an argon2 hash of the password."""

from __future__ import annotations

import asyncio
import json
import time
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from notifier.keys import Keys
from notifier.streams import as_text
from notifier.tokens import ROLES, Token

MIN_PASSWORD = 12
HASHER = PasswordHasher()  # argon2id with the library's current recommended costs


@cache
def _decoy() -> str:
    """Verified against when the name is unknown: a wrong name costs what a wrong password
    does."""
    return HASHER.hash("not a password of anyone's")


class AccountStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, name: str, role: str, password: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.isprintable() or " " in name:
            raise ValueError("name must be 1 to 64 printable characters without spaces")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"the password must be at least {MIN_PASSWORD} characters")
        hashed = await asyncio.to_thread(HASHER.hash, password)
        record = json.dumps({"role": role, "hash": hashed, "created": time.time()})
        if not await self.redis.hsetnx(self.keys.accounts, name, record):
            raise ValueError(f"an account named {name!r} exists; remove it first")

    async def check(self, name: str, password: str) -> Token | None:
        """The account, if ``password`` is its password. Takes as long for an unknown name."""
        record = await self.redis.hget(self.keys.accounts, name) if name else None
        data = json.loads(record) if record else None
        stored = data["hash"] if data else await asyncio.to_thread(_decoy)
        try:
            await asyncio.to_thread(HASHER.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if data is None:
            return None
        return Token(f"account:{name}", data["role"], data["created"])

    async def get(self, name: str) -> Token | None:
        """The account as it is now (a session checks it on every request)."""
        record = await self.redis.hget(self.keys.accounts, name)
        if record is None:
            return None
        role, created = _role_created(record)
        return Token(f"account:{name}", role, created)

    async def list(self) -> list[tuple[str, str, float]]:
        rows = await self.redis.hgetall(self.keys.accounts)
        found = [(as_text(k), *_role_created(v)) for k, v in rows.items()]
        return sorted(found, key=lambda row: row[2])

    async def remove(self, name: str) -> bool:
        return bool(await self.redis.hdel(self.keys.accounts, name))


def _role_created(record: bytes | str) -> tuple[str, float]:
    data = json.loads(record)
    return data["role"], data["created"]
