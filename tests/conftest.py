"""Shared fixtures: real Redis (isolated by key prefix), the real service, its HTTP API."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from redis.exceptions import RedisError

from notifier import intake
from notifier.config import Settings, load_settings
from notifier.runtime import Runtime
from notifier.service import Service

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-secret-key"
REDIS_URL = os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/15")  # as scripts/test


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> None:
    """The tests choose their own settings; a developer's NOTIFIER_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("NOTIFIER_") and name != "NOTIFIER_REDIS_URL":
            del os.environ[name]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.exit(f"the tests need Redis at {REDIS_URL}: {e}", returncode=3)
    finally:
        client.close()


def make_settings(tmp_path: Path, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "outbox_dir": tmp_path / "outbox",
        "print_dir": tmp_path / "print",
        "http_port": 0,
        "visibility_timeout": 30.0,
        "retry_base_delay": 0.05,
        "secret_key": SECRET_KEY,
        "quiet_hours": None,  # tests run at any hour; quiet hours have tests of their own
        "breaker_seconds": 0.3,  # injected faults open circuits: let them close soon
        "print_warm_up": False,  # a PDF process for each test's service would cost seconds
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return make_settings(tmp_path, prefix)


@pytest.fixture(autouse=True)
def _drop_keys(prefix: str) -> Any:
    yield
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime.open(settings)
    await rt.subscribers.upgrade_index()  # as every process does before it writes
    yield rt
    await rt.close()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    svc = Service(settings, grace=5.0)
    await svc.start()
    yield svc
    await svc.stop()


class Api:
    """A small client for the service's HTTP API."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, json=json, headers=hdrs, data=data
        ) as response:
            text = await response.text()
            ctype = response.headers.get("Content-Type", "")
            body = await response.json() if "json" in ctype else text
            return response.status, body


@pytest.fixture
async def api(service: Service) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{service.port}")


@pytest.fixture
async def tokens(runtime: Runtime) -> dict[str, str]:
    return {
        role: await runtime.tokens.create(role, f"{role}-tester")
        for role in ("staff", "emergency", "admin")
    }


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll until ``check`` returns something truthy; fail with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")


def announcement(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "粗大ごみの収集日が変わります",
        "body": "12月から粗大ごみの収集日が変わります。\n\nくわしくはホームページをご覧ください。",
        "topics": ["garbage"],
        "areas": ["nerima"],
    }
    body.update(fields)
    return body


async def enqueued(runtime: Runtime, settings: Settings | None = None, **fields: Any) -> str:
    """``announcement(**fields)`` checked as intake checks it (for ``settings``' ward, the
    runtime's without) and put on the intake stream, as another system queues one; its id."""
    notice = intake.validate(announcement(**fields), settings or runtime.settings)
    await intake.enqueue(runtime.notices, notice)
    assert notice.id is not None
    return notice.id


async def whole_ward_notice(runtime: Runtime, settings: Settings, channel: str) -> str:
    """An announcement on ``channel`` alone for everyone in the ward, queued; its id."""
    return await enqueued(runtime, settings, channels=[channel], areas=[])


def channel_progress(
    audience: int, *, sent: int | None = None, failed: int = 0, pending: int = 0
) -> dict[str, int]:
    """A channel's progress in a notice's view once all ``audience`` were cut into
    batches: every one sent, unless ``sent``, ``failed`` or ``pending`` says otherwise."""
    if sent is None:
        sent = audience - failed - pending
    return {
        "audience": audience,
        "recipients": audience,
        "sent": sent,
        "failed": failed,
        "pending": pending,
    }


LINE_TOKEN = "test-channel-token"
LINE_SECRET = "test-channel-secret"


@pytest.fixture
async def fake_line() -> AsyncIterator[Any]:
    from tests.fake_line import FakeLine

    fake = FakeLine(token=LINE_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


def line_settings(tmp_path: Path, prefix: str, fake_url: str, **overrides: Any) -> Settings:
    """Settings with LINE live against the fake server."""
    values: dict[str, Any] = {
        "line_channel_access_token": LINE_TOKEN,
        "line_channel_secret": LINE_SECRET,
        "line_api_url": fake_url,
        "line_timeout": 0.5,
        "line_pause_seconds": 0.5,
    }
    values.update(overrides)
    return make_settings(tmp_path, prefix, **values)


X_CREDENTIALS = {
    "x_consumer_key": "test-consumer-key",
    "x_consumer_secret": "test-consumer-secret",
    "x_access_token": "test-access-token",
    "x_access_token_secret": "test-access-secret",
}


def x_settings(tmp_path: Path, prefix: str, fake_url: str, **overrides: Any) -> Settings:
    """Settings with X live against the fake X server."""
    values: dict[str, Any] = {**X_CREDENTIALS, "x_api_url": fake_url, "x_timeout": 0.5}
    values.update(overrides)
    return make_settings(tmp_path, prefix, **values)


async def finished(
    runtime: Runtime, notice_id: str, timeout: float = 20, interval: float = 0.01
) -> dict[str, Any]:
    """The notice the first time it reads done or failed (every batch has an outcome). A
    Redis error (Redis restarting, Sentinel still settling on a new master) counts as not
    yet."""

    async def check() -> dict[str, Any] | None:
        try:
            found = await runtime.notices.get(notice_id)
        except RedisError:
            return None
        return found if found and found["status"] in ("done", "failed") else None

    result: dict[str, Any] = await wait_for(check, timeout=timeout, interval=interval)
    return result


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `notifier worker` process that works as ``settings`` say."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        PYTHONPATH=str(ROOT),
        NOTIFIER_REDIS_URL=settings.redis_url,
        NOTIFIER_REDIS_PREFIX=settings.redis_prefix,
        NOTIFIER_OUTBOX_DIR=str(settings.outbox_dir),
        NOTIFIER_LINE_API_URL=settings.line_api_url,
        NOTIFIER_X_API_URL=settings.x_api_url,
        NOTIFIER_QUIET_HOURS=settings.quiet_hours or "off",
        NOTIFIER_BREAKER_SECONDS=str(settings.breaker_seconds),
    )
    for name in ("secret_key", "line_channel_access_token", "line_channel_secret", *X_CREDENTIALS):
        value = getattr(settings, name)
        if value is not None:
            env[f"NOTIFIER_{name.upper()}"] = value.get_secret_value()
    env.update(extra)
    return env


async def kill_worker_once(
    channel: str, env: dict[str, str], condition: Callable[[], Awaitable[Any]]
) -> None:
    """Run `notifier worker` for ``channel`` until ``condition`` holds, then SIGKILL it."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "worker",
        "--channels",
        channel,
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(condition, timeout=20)
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()


async def take_over(
    settings: Settings, channel: str, runtime: Runtime, notice_id: str
) -> dict[str, Any]:
    """A new worker takes over a dead one's batches after the visibility timeout."""
    restarted = Service(
        settings.model_copy(update={"visibility_timeout": 0.5}),
        parts=["workers"],
        channel_names=[channel],
    )
    await restarted.start()
    try:
        return await finished(runtime, notice_id)
    finally:
        await restarted.stop()


def email_settings(tmp_path: Path, prefix: str, port: int, **overrides: Any) -> Settings:
    """Settings with email live against the tests' SMTP server."""
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
        "mail_from": "oshirase@city.nerima.example.jp",
        "smtp_timeout": 5.0,
        "public_url": "https://notices.city.nerima.example.jp",
    }
    values.update(overrides)
    return make_settings(tmp_path, prefix, **values)


async def subscriber_counts(runtime: Runtime) -> dict[str, int]:
    """How many subscribers each channel's index holds (what a test checks after an
    import, a sign-up or a deletion)."""
    channels = ("line", "email", "print")
    async with runtime.redis.pipeline(transaction=False) as pipe:
        for channel in channels:
            pipe.zcard(runtime.keys.by_channel(channel))
        values = await pipe.execute()
    return dict(zip(channels, values, strict=True))


@asynccontextmanager
async def delivering(settings: Settings, *channels: str) -> AsyncIterator[Service]:
    """The dispatcher and the workers of ``channels`` (every channel, without names)
    running in this process, stopped when the block ends, however it ends."""
    named = {"channel_names": list(channels)} if channels else {}
    service = Service(settings, parts=["dispatch", "workers"], **named)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
