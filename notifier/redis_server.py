"""Find Redis, or start a private one under ./var for a fresh checkout."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

HOW_TO_GET_REDIS = (
    "No Redis answers at {url}. Install one (Debian/Ubuntu: sudo apt-get install redis-server),"
    " start it, or point NOTIFIER_REDIS_URL at yours; `docker compose up redis` starts one too."
)


def answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_private(url: str, var_dir: Path) -> subprocess.Popen[bytes] | None:
    """Start redis-server (append-only on) for ``url`` if it is local and nothing answers.

    Returns the process, or None if Redis already answers. Raises RuntimeError with
    directions when there is no Redis to be had.
    """
    if answers(url):
        return None
    parsed = urlparse(url)
    binary = shutil.which("redis-server")
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1") or binary is None:
        raise RuntimeError(HOW_TO_GET_REDIS.format(url=url))
    data = var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
        [
            binary,
            "--bind",
            parsed.hostname,
            "--port",
            str(parsed.port or 6379),
            "--dir",
            str(data.resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--logfile",
            str((data / "redis.log").resolve()),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(url, 0.2):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"redis-server did not start; see {data / 'redis.log'}")
