"""Small helpers for Redis stream consumer groups."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

# What redis-py returns with decode_responses off and protocol=2 (Runtime pins both); its own
# annotations are wider unions that also cover decoded and RESP3 replies.
Fields: TypeAlias = dict[bytes, bytes]
Entry: TypeAlias = tuple[bytes, Fields]  # (entry id, fields)
StreamReply: TypeAlias = list[tuple[bytes, list[Entry]]]  # XREAD / XREADGROUP: (stream, entries)


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text (bytes here, since decode_responses is off)."""
    return value.decode() if isinstance(value, bytes) else value


def multi(pipe: Pipeline) -> None:
    """``pipe.multi()``, which redis-py leaves unannotated."""
    cast(Callable[[], None], pipe.multi)()


def consumer_name() -> str:
    """Unique per process: a dead process's pending entries stay its own until reclaimed."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if missing; a new group reads from the start."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def decode_fields(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}
