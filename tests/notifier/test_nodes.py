"""The service as it is deployed: Redis under Sentinel (a master, a replica, three Sentinels)
and, as real processes, two `notifier api`, two `notifier worker` and two `notifier
scheduler`, each configured through its environment alone. Whichever API takes a notice,
whichever worker dies mid-fan-out, however many schedulers run: every resident gets each
notice on LINE exactly once.

The processes are started once for the module (they take seconds to start); the fake LINE
serves them from a thread of its own, and each test tells its notices apart by title."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import aiohttp
import pytest

from notifier.config import Settings
from notifier.digest import last_fire, week_before
from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.worker import GROUP
from tests.conftest import LINE_TOKEN, ROOT, announcement, finished, line_settings, wait_for
from tests.fake_line import FakeLine
from tests.notifier.test_redis_restart import residents
from tests.redis_process import Sentinels, free_port

RESIDENTS = 3000
USERS = {f"U{i:032x}" for i in range(RESIDENTS)}
BATCH = 100  # 30 batches a notice, two in flight in each worker: a fan-out to kill one in
BATCHES = RESIDENTS // BATCH
VISIBILITY = 3.0  # NOTIFIER_VISIBILITY_TIMEOUT: a dead worker's batches are taken over then


class LineApart:
    """The fake LINE on an event loop of its own, in a thread: it outlives each test's
    loop, as the processes that send to it do."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeLine = self._run(self._start())

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    @staticmethod
    async def _start() -> FakeLine:
        fake = FakeLine(token=LINE_TOKEN)
        await fake.start()
        return fake

    def stop(self) -> None:
        try:
            self._run(self.fake.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


class Node:
    """One `notifier <role>` process, configured by its environment; its log (JSON lines
    on stderr) in ``log``, across its restarts."""

    def __init__(self, name: str, role: list[str], env: dict[str, str], folder: Path) -> None:
        self.name, self.role, self.env = name, role, env
        self.port = int(env["NOTIFIER_HTTP_PORT"]) if role == ["api"] else None
        self.log = folder / f"{name}.log"
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._file: IO[bytes] | None = None

    def start(self) -> None:
        self._file = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "notifier", *self.role],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._file,
        )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def events(self, name: str) -> list[dict[str, Any]]:
        """What it logged under that event name."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("event") == name:
                found.append(record)
        return found

    def ready(self) -> bool:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited:\n{self.log.read_text(errors='replace')}")
        if self.port is None:
            return len(self.events("service.started")) >= self.starts
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self._file is not None:
            self._file.close()
            self._file = None


def node_env(settings: Settings) -> dict[str, str]:
    """What every process is told, all through NOTIFIER_* (as a service manager would)."""
    assert settings.redis_sentinels is not None and settings.secret_key is not None
    token, secret = settings.line_channel_access_token, settings.line_channel_secret
    assert token is not None and secret is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        PYTHONPATH=str(ROOT),
        NOTIFIER_REDIS_SENTINELS=settings.redis_sentinels,
        NOTIFIER_REDIS_SENTINEL_MASTER=settings.redis_sentinel_master,
        NOTIFIER_REDIS_URL=settings.redis_url,  # under Sentinel: only its database counts
        NOTIFIER_REDIS_PREFIX=settings.redis_prefix,
        NOTIFIER_SECRET_KEY=settings.secret_key.get_secret_value(),
        NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN=token.get_secret_value(),
        NOTIFIER_LINE_CHANNEL_SECRET=secret.get_secret_value(),
        NOTIFIER_LINE_API_URL=settings.line_api_url,
        NOTIFIER_LINE_BATCH_SIZE=str(BATCH),
        NOTIFIER_WORKER_CONCURRENCY="2",
        NOTIFIER_VISIBILITY_TIMEOUT=str(VISIBILITY),
        NOTIFIER_QUIET_HOURS="off",
        NOTIFIER_OUTBOX_DIR=str(settings.outbox_dir),
        NOTIFIER_PRINT_DIR=str(settings.print_dir),
        NOTIFIER_PRINT_WARM_UP="false",
    )
    return env


class Deployment:
    """Two of each: api (ports of their own), worker (dispatcher and LINE worker),
    scheduler."""

    def __init__(
        self, folder: Path, settings: Settings, direct: Settings, line: LineApart, token: str
    ) -> None:
        self.settings, self.direct, self.line, self.token = settings, direct, line, token
        env = node_env(settings)
        self.apis = [
            Node(f"api-{x}", ["api"], {**env, "NOTIFIER_HTTP_PORT": str(free_port())}, folder)
            for x in "ab"
        ]
        self.workers = [
            Node(f"worker-{x}", ["worker", "--channels", "line"], env, folder) for x in "ab"
        ]
        self.schedulers = [Node(f"scheduler-{x}", ["scheduler"], env, folder) for x in "ab"]
        self.nodes = [*self.apis, *self.workers, *self.schedulers]

    @property
    def fake(self) -> FakeLine:
        return self.line.fake

    def revive(self) -> None:
        """Start whatever is not running (all of it at first), and wait until it is ready."""
        for node in self.nodes:
            if not node.alive:
                node.start()
        deadline = time.monotonic() + 60
        while not all(node.ready() for node in self.nodes):
            if time.monotonic() > deadline:
                raise TimeoutError("the service's processes did not all start in 60 s")
            time.sleep(0.1)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


async def prepare(settings: Settings) -> str:
    """The residents, a staff token; and this week's printed digest marked built, so that
    no scheduler lays out PDFs at start-up (digest.build_due catches up a missed week)."""
    runtime = Runtime.open(settings)
    try:
        await residents(runtime, RESIDENTS)
        fired = last_fire(settings.digest_cron, settings, datetime.now(settings.tz))
        if fired is not None:
            week = runtime.keys.digest_built(week_before(fired).label)
            await runtime.redis.set(week, "not in these tests")
        return await runtime.tokens.create("staff", "nodes-desk")
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("nodes")
    cluster = Sentinels(folder / "redis")
    line: LineApart | None = None
    nodes: Deployment | None = None
    try:
        line = LineApart()
        # the processes find the master through Sentinel; the tests' own client, which
        # needs no failover, goes to it straight (redis-py's Sentinel clients would outlive
        # the Runtime's close, and each test's event loop)
        settings = line_settings(
            folder, "nodes:", line.fake.url, redis_sentinels=cluster.addresses
        ).model_copy(update={"redis_url": cluster.master.url})
        direct = settings.model_copy(update={"redis_sentinels": None})
        nodes = Deployment(folder, settings, direct, line, asyncio.run(prepare(direct)))
        nodes.revive()
        yield nodes
    finally:
        if nodes is not None:
            nodes.kill()
        if line is not None:
            line.stop()
        cluster.stop()


@pytest.fixture
def nodes(deployment: Deployment) -> Deployment:
    """Every process running (a test before may have killed one), LINE answering at once."""
    deployment.revive()
    deployment.fake.response_delay = 0.0
    return deployment


@pytest.fixture
async def view(deployment: Deployment) -> AsyncIterator[Runtime]:
    """The tests' own client of the shared Redis, to read notices with."""
    runtime = Runtime.open(deployment.direct)
    yield runtime
    await runtime.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, api: Node, token: str, body: dict[str, Any], key: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    url = f"http://127.0.0.1:{api.port}/api/announcements"
    async with http.post(url, json=body, headers=headers) as answer:
        assert answer.status == 202, await answer.text()
        accepted: dict[str, Any] = await answer.json()
        return accepted


def titled(title: str) -> dict[str, Any]:
    return announcement(title=title, channels=["line"], areas=[])


def multicasts_of(fake: FakeLine, title: str) -> list[dict[str, Any]]:
    """The multicasts LINE accepted (a 409 for a retry key it had is not one) of the notice
    with that title."""
    return [m for m in list(fake.multicasts) if title in m["messages"][0]["altText"]]


def assert_everyone_once(fake: FakeLine, title: str, view: dict[str, Any]) -> None:
    got = Counter(user for m in multicasts_of(fake, title) for user in m["to"])
    never, twice = len(USERS - set(got)), sum(1 for n in got.values() if n > 1)
    assert (never, twice, len(set(got) - USERS)) == (0, 0, 0), (
        f"{title}: {never} residents never got it, {twice} more than once;"
        f" the notice: {view['status']}, {view['progress']}"
    )
    assert got == Counter(dict.fromkeys(USERS, 1))
    line = view["progress"]["line"]
    assert view["status"] == "done"
    assert (line["recipients"], line["sent"], line["failed"], line["pending"]) == (
        RESIDENTS,
        RESIDENTS,
        0,
        0,
    )


async def holders(view: Runtime, stream: str) -> Counter[str]:
    """The consumers holding entries of ``stream`` (read, not acknowledged), and how many."""
    entries = await view.redis.xpending_range(stream, GROUP, "-", "+", 1000)
    return Counter(as_text(e["consumer"]) for e in cast("list[dict[str, bytes]]", entries))


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.mark.timeout(60)
async def test_notices_posted_to_either_api_reach_everyone_once(
    nodes: Deployment, view: Runtime, http: aiohttp.ClientSession
) -> None:
    one, two = tag(), tag()
    first, second = f"ノード試験 {one}", f"ノード試験 {two}"
    a = await post(http, nodes.apis[0], nodes.token, titled(first), key=one)
    b = await post(http, nodes.apis[1], nodes.token, titled(second), key=two)
    # the first sent again through the other API, with its key: the same notice
    again = await post(http, nodes.apis[1], nodes.token, titled(first), key=one)
    assert again == a and a["id"] != b["id"]
    settled = [await finished(view, n["id"], timeout=30) for n in (a, b)]
    for title, found in zip((first, second), settled, strict=True):
        assert_everyone_once(nodes.fake, title, found)
    listed = await view.notices.list(None, 1000)
    assert sorted(n["id"] for n in listed if n["notice"]["title"] in (first, second)) == sorted(
        [a["id"], b["id"]]
    )


@pytest.mark.timeout(60)
async def test_a_worker_killed_mid_fan_out_is_covered_by_the_other_and_everyone_gets_it_once(
    nodes: Deployment, view: Runtime, http: aiohttp.ClientSession
) -> None:
    nodes.fake.response_delay = 0.25  # four batches in flight: the fan-out takes 2 s
    key = tag()
    title = f"ノード試験 {key}"
    accepted = await post(http, nodes.apis[0], nodes.token, titled(title), key=key)

    async def sending() -> bool:
        return len(multicasts_of(nodes.fake, title)) >= 6

    await wait_for(sending, timeout=20, interval=0.01)
    stream = view.keys.delivery("line", "normal")
    held = await holders(view, stream)
    holding = [w for w in nodes.workers if any(f"-{w.pid}-" in c for c in held)]
    assert holding, f"no worker holds a batch: {held}"
    victim, other = holding[0], next(w for w in nodes.workers if w is not holding[0])
    killed_at = datetime.now(UTC)
    victim.kill()  # SIGKILL, holding batches: some sent to LINE, some not yet
    killed, before = time.monotonic(), len(multicasts_of(nodes.fake, title))
    assert before < BATCHES
    found = await finished(view, accepted["id"], timeout=30)
    took = time.monotonic() - killed
    assert_everyone_once(nodes.fake, title, found)
    reclaimed = [
        e for e in other.events("batch.reclaimed") if datetime.fromisoformat(e["ts"]) >= killed_at
    ]
    assert reclaimed, "the other worker took none of the dead one's batches over"
    dead = {c for c in held if f"-{victim.pid}-" in c}
    assert dead.isdisjoint(await holders(view, stream))  # its batches were all taken over
    # taken over once idle for the visibility timeout (looked for every half of it)
    assert took < VISIBILITY * 1.5 + 5, f"done {took:.1f} s after the kill"


@pytest.mark.timeout(60)
async def test_a_scheduled_announcement_with_two_schedulers_is_released_once(
    nodes: Deployment, view: Runtime, http: aiohttp.ClientSession
) -> None:
    key = tag()
    title = f"ノード試験 {key}"
    late = {**titled(title), "publish_at": datetime.now(UTC).isoformat()}
    async with http.post(
        f"http://127.0.0.1:{nodes.apis[0].port}/api/announcements",
        json=late,
        headers={"Authorization": f"Bearer {nodes.token}"},
    ) as answer:  # the API takes a time to come only
        assert answer.status == 400
        assert "publish_at" in (await answer.json())["error"]["fields"]
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    body = {**titled(title), "publish_at": publish_at.isoformat()}
    accepted = await post(http, nodes.apis[1], nodes.token, body, key=key)
    assert accepted["status"] == "scheduled"
    found = await finished(view, accepted["id"], timeout=30)
    assert_everyone_once(nodes.fake, title, found)
    assert min(m["wall"] for m in multicasts_of(nodes.fake, title)) >= publish_at.timestamp()
    released = [
        event
        for scheduler in nodes.schedulers
        for event in scheduler.events("notice.released")
        if event.get("notice") == accepted["id"]
    ]
    assert len(released) == 1, released
    assert await view.redis.zscore(view.keys.scheduled, accepted["id"]) is None  # nor again
    assert all(scheduler.alive for scheduler in nodes.schedulers)
    listed = await view.notices.list(None, 1000)
    assert [n["id"] for n in listed if n["notice"]["title"] == title] == [accepted["id"]]
