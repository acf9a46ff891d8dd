"""JSON from outside (HTTP bodies, the LINE webhook, the intake stream), read so that no
input can fault the reader: nesting is bounded, and whatever is not strict JSON
(RFC 8259) is refused with a reason. Pure: text in, data out."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # a notice is four levels deep (translations → en → title); LINE's events six


class JsonError(ValueError):
    """Input that is not JSON we take; the message ("nests deeper than 32 levels") says
    why, without echoing the input."""


def _no_constant(name: str) -> Any:
    raise JsonError(f"holds {name}, which is not JSON")


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``raw``; JsonError if it is not UTF-8 JSON or nests deeper than
    ``max_depth`` arrays and objects."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw  # UTF-8 only, as RFC 8259 says
        value = json.loads(text, parse_constant=_no_constant)
    except JsonError:
        raise
    except json.JSONDecodeError as e:
        raise JsonError(f"is not JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise JsonError(f"nests deeper than {max_depth} levels") from None
    except ValueError:  # undecodable bytes, a number of more digits than Python reads
        raise JsonError("is not UTF-8 JSON, or holds a number too long to read") from None
    if _depth_over(value, max_depth):
        raise JsonError(f"nests deeper than {max_depth} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` has arrays or objects nested more than ``limit`` deep (no
    recursion, so the check itself cannot overflow)."""
    level: list[Any] = [value]
    for _ in range(limit):
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(item.values())
            elif isinstance(item, list):
                inner.extend(item)
        if not inner:
            return False
        level = inner
    return any(isinstance(item, dict | list) for item in level)
