"""Logs are data: one JSON object a line, and no personal data in them."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            data["error"] = repr(record.exc_info[1])
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "apscheduler", "weasyprint", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields; callers pass ids, counts and masked values only.
    A field named like a LogRecord attribute (``created``, ``name`` …) gets a ``_`` suffix
    rather than breaking the log call."""
    if not _RESERVED.isdisjoint(fields):
        fields = {(f"{k}_" if k in _RESERVED else k): v for k, v in fields.items()}
    logger.log(level, name, extra=fields)


def mask(value: str) -> str:
    """A stable, non-reversible stand-in for personal data in logs and errors."""
    return "pd:" + hashlib.sha256(value.encode()).hexdigest()[:10]
