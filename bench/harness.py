"""What the benchmarks share: the service's processes and the fake LINE they talk to,
subscribers made and loaded in bulk, and the keys dropped afterwards.

A benchmark runs from the project's root (``.venv/bin/python bench/<name>.py``); the
project's editable install puts the root on ``sys.path``, so ``bench.harness`` and the
tests' fakes (``tests.fake_line``, ``tests.smtp_sink``) import as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis

from notifier.config import Ward
from notifier.runtime import Runtime
from notifier.service import Service

ROOT = Path(__file__).resolve().parent.parent

TOKEN = "bench-token"

SECRET = "bench-secret-key-bench-secret-key"  # subscribers are sealed with it, as when live


CHUNK = 5000

DONE = (b"done", b"failed")  # a notice's status when its delivery is over

# settings the benchmark must own: the environment would otherwise win over them
OWNED_ENV = (
    "NOTIFIER_REDIS_URL",
    "NOTIFIER_REDIS_PREFIX",
    "NOTIFIER_OUTBOX_DIR",
    "NOTIFIER_PRINT_DIR",
    "NOTIFIER_QUIET_HOURS",
)


class Report:
    """Human lines (stdout, or stderr with --json) and the figures as a dict."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.figures: dict[str, Any] = {}

    def say(self, line: str) -> None:
        print(line, file=sys.stderr if self.as_json else sys.stdout, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(session: aiohttp.ClientSession, url: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {within} s")


async def start_fake_line(
    rate: float | None = None,
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """The fake LINE server in its own process, and where it serves (url, stats): LINE's
    limits on every endpoint, ``rate`` multicasts a second instead of LINE's if given."""
    override = [] if rate is None else ["--rate", str(rate)]
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "fake_line_server.py"),
        *override,
        "--token",
        TOKEN,
        stdout=asyncio.subprocess.PIPE,
    )
    assert fake.stdout is not None
    where: dict[str, str] = json.loads(await asyncio.wait_for(fake.stdout.readline(), 30))
    return fake, where


def service_env(
    args: argparse.Namespace, prefix: str, port: int, line_url: str, **extra: str
) -> dict[str, str]:
    """The environment of the service's processes: LINE live against the fake.

    The multicast limit is ``args.service_rate`` if the bench has that option (None: the
    service's default), else ``args.rate``, the fake's (the benches that share this)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_REDIS_URL=args.redis_url,
        NOTIFIER_REDIS_PREFIX=prefix,
        NOTIFIER_HTTP_PORT=str(port),
        NOTIFIER_SECRET_KEY=SECRET,
        NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN=TOKEN,
        NOTIFIER_LINE_CHANNEL_SECRET="bench-secret",
        NOTIFIER_LINE_API_URL=line_url,
        NOTIFIER_WORKER_CONCURRENCY=str(args.concurrency),
        NOTIFIER_OUTBOX_DIR=str(Path(args.tmp) / "outbox"),
        NOTIFIER_PRINT_DIR=str(Path(args.tmp) / "print"),
        **extra,
    )
    service_rate = vars(args).get("service_rate", args.rate)
    if service_rate is not None:
        env["NOTIFIER_LINE_RATE_LIMIT"] = str(service_rate)
    return env


async def stop_all(processes: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM each process, wait up to 30 s for it, then kill it."""
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()


def address(channel: str, i: int) -> str:
    return f"U{i:032x}" if channel == "line" else f"resident{i}@example.jp"


def subscriber_data(channel: str, i: int, ward: Ward) -> dict[str, object]:
    """A varied, deterministic subscriber: a fifth whole-ward, a third every topic, 30% not ja."""
    areas, topics = ward.area_codes, ward.topic_codes
    others = [code for code in ward.language_codes if code != "ja"]
    return {
        "channel": channel,
        "address": address(channel, i),
        "name": f"住民{i}",
        "areas": [] if i % 5 == 0 else sorted({areas[i % len(areas)], areas[i // 7 % len(areas)]}),
        "topics": []
        if i % 3 == 0
        else sorted({topics[i % len(topics)], topics[i // 11 % len(topics)]}),
        "language": others[i // 20 % len(others)] if others and i % 10 >= 7 else "ja",
    }


def ranges(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


async def load(rt: Runtime, channel: str, n: int) -> tuple[float, float]:
    """Validate and save n subscribers of ``channel``; (validate seconds, save seconds)."""
    validating = saving = 0.0
    ward = rt.settings.ward
    for chunk in ranges(n, CHUNK):
        started = time.perf_counter()
        subs = [rt.subscribers.validate(subscriber_data(channel, i, ward)) for i in chunk]
        validating += time.perf_counter() - started
        started = time.perf_counter()
        results = await rt.subscribers.save(subs)
        saving += time.perf_counter() - started
        if not all(created for _, created in results):
            raise RuntimeError("a subscriber already existed under a fresh prefix")
    return validating, saving


async def delivered(
    rt: Runtime, service: Service, notice_id: str, limit: float
) -> tuple[dict[str, Any], float]:
    """Start the service, wait until the notice is done (or failed), stop it; the notice's
    view and the seconds from the start. Only the status is read while waiting (one small
    command each 20 ms): the wait takes little of the CPU that the delivery is using."""
    started = time.perf_counter()
    await service.start()
    try:
        while (await rt.redis.hget(rt.keys.notice(notice_id), "status")) not in DONE:
            if time.perf_counter() - started > limit:
                view = await rt.notices.get(notice_id)
                progress = view["progress"] if view else None
                raise TimeoutError(f"delivery not done after {limit:g} s: progress {progress}")
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        await service.stop()
    view = await rt.notices.get(notice_id)
    assert view is not None
    return view, seconds


def drop_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN + DEL in chunks); the number deleted."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    deleted = 0
    try:
        chunk: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            chunk.append(key)
            if len(chunk) >= 1000:
                deleted += client.delete(*chunk)
                chunk.clear()
        if chunk:
            deleted += client.delete(*chunk)
    finally:
        client.close()
    return deleted
