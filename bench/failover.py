"""Redis Sentinel failover in the middle of a LINE fan-out: the master is killed while one
whole-ward alert goes out to N LINE subscribers (and --email subscribers by email), and a
client keeps posting announcements through the API.

Each run has Redis of its own (tests/redis_process.py: a master, a replica and three
Sentinels, real processes on loopback, append-only with fsync always, a master down after
1 s without an answer), the tests' fake LINE and SMTP sink in a process of their own (this
file with --serve-fakes: they count what each resident received), and the service
(`notifier serve`, and --workers - 1 more LINE workers) with NOTIFIER_REDIS_SENTINELS set.
It posts the alert, SIGKILLs the master once --kill-at of the alert's multicasts were
accepted, starts it again --restart-after seconds after Sentinel names the new master (as a
service manager would; Sentinel then makes it the new master's replica) and waits until
every resident has the alert (or, once the alert says it is done, until nothing more
arrives for --grace seconds; at most --timeout). From the alert's POST until the API accepts
again after the death (at most --retry-for seconds), a client posts an announcement every
50 ms, each with an Idempotency-Key of its own, sending it again with the same key after
each 503 or lost connection (for up to --retry-for seconds from its first try). The
announcements are scheduled for tomorrow: they add no deliveries. With --no-kill the master
is left alone: a control run, for what the rest (a short --visibility above all: a batch
still being sent when it is taken over is sent again) does without a failover.

Printed per run and as min/median/max: how many failovers Sentinel made; seconds from the
master's death to Sentinel naming the new master, to the first multicast accepted after the
death and after that naming, and to a replica being in sync again; LINE residents (and
email addresses) that never got the alert and that got it more than once; the API's answers
during the failover; announcements that the retries made twice; the alert's final status
and progress.

    .venv/bin/python bench/failover.py --subscribers 20000 --runs 1
    .venv/bin/python bench/failover.py                    # 100,000 subscribers, 3 runs
    .venv/bin/python bench/failover.py --no-kill --runs 1 # the control
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from bench.harness import SECRET, TOKEN, address, free_port, load, service_env, stop_all, wait_ready
from notifier.config import load_settings
from notifier.runtime import Runtime
from tests.fake_line import FakeLine
from tests.redis_process import Sentinels
from tests.smtp_sink import SmtpSink

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent

PREFIX = "bench:failover:"  # each run has a Redis of its own
INTERVAL = 0.05  # seconds between two announcements of the client
MAIL_FROM = "bousai@city.nerima.example.jp"


# --- the fakes, in a process of their own -----------------------------------------------------


class CountingLine(FakeLine):
    """The tests' fake LINE, also saying what it accepted of one notice: multicasts whose
    first message's altText holds ``?contains=``, and the sink's messages holding ``?id=``.
    GET /bench/accepted: their times (and with ``?distinct=1`` how many users and addresses
    they reached); GET /bench/delivered: how many of them reached each user and address."""

    def __init__(self, sink: SmtpSink, rate: float) -> None:
        super().__init__(token=TOKEN, rate=rate, schema_sample=100)
        self.sink = sink

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/bench/accepted", self._on_accepted)
        app.router.add_get("/bench/delivered", self._on_delivered)
        super()._routes(app)  # last: it ends with a catch-all

    def _of(self, request: web.Request) -> tuple[list[dict[str, Any]], list[Any]]:
        text, notice = request.query["contains"], request.query.get("id", "").encode()
        multicasts = [m for m in self.multicasts if text in m["messages"][0].get("altText", "")]
        mails = [e for e in list(self.sink.envelopes) if notice and notice in e.data]
        return multicasts, mails

    async def _on_accepted(self, request: web.Request) -> web.Response:
        multicasts, mails = self._of(request)
        found: dict[str, Any] = {"walls": sorted(m["wall"] for m in multicasts)}
        if request.query.get("distinct") == "1":
            found["users"] = len({user for m in multicasts for user in m["to"]})
            found["addresses"] = len({rcpt for e in mails for rcpt in e.rcpt_tos})
            found["messages"] = len(mails)
        return web.json_response(found)

    async def _on_delivered(self, request: web.Request) -> web.Response:
        multicasts, mails = self._of(request)
        statuses = Counter(str(s) for path, s in self.responses if path.endswith("/multicast"))
        copies: dict[str, list[float]] = {}  # address → when each copy was accepted
        for mail in mails:
            for rcpt in mail.rcpt_tos:
                copies.setdefault(rcpt, []).append(mail.at)
        return web.json_response(
            {
                "line": Counter(user for m in multicasts for user in m["to"]),
                "email": {rcpt: len(ats) for rcpt, ats in copies.items()},
                "email_twice": {rcpt: ats for rcpt, ats in copies.items() if len(ats) > 1},
                "statuses": statuses,
            }
        )


async def serve_fakes(rate: float) -> int:
    """The child: the fake LINE and the SMTP sink until SIGTERM; where they are, on stdout."""
    with SmtpSink() as sink:
        line = CountingLine(sink, rate)
        await line.start()
        print(json.dumps({"url": line.url, "smtp_port": sink.port}), flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await line.stop()
    return 0


async def start_fakes(rate: float) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE),
        "--serve-fakes",
        str(rate),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        where: dict[str, Any] = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
    except (TimeoutError, ValueError):
        await stop_all([child])
        raise
    return child, where


# --- Redis ------------------------------------------------------------------------------------


async def watch_sentinels(
    cluster: Sentinels, port: int, named: dict[str, float], first: asyncio.Event
) -> None:
    """When the first and when every Sentinel names the master at ``port``."""
    clients = [aioredis.Redis(port=s.port, socket_timeout=0.5) for s in cluster.sentinels]
    seen: set[int] = set()
    try:
        while len(seen) < len(clients):
            for i, client in enumerate(clients):
                if i in seen:
                    continue
                try:
                    found = await client.sentinel_get_master_addr_by_name("notifier")
                except (RedisError, OSError):
                    continue
                if isinstance(found, tuple) and int(found[1]) == port:
                    seen.add(i)
                    named.setdefault("first", time.time())
                    first.set()
            await asyncio.sleep(0.01)
        named["all"] = time.time()
    finally:
        for client in clients:
            await client.aclose()


async def sentinel_view(cluster: Sentinels) -> dict[str, Any]:
    """What a Sentinel that answers says now: failovers so far (its config epoch) and
    which of the two processes is the master."""
    ports = {cluster.master.port: "old", cluster.replica.port: "new"}
    for sentinel in cluster.sentinels:
        client = aioredis.Redis(port=sentinel.port, socket_timeout=0.5)
        try:
            found: Any = await client.sentinel_master("notifier")
            return {"failovers": int(found["config-epoch"]), "master": ports.get(found["port"])}
        except (RedisError, OSError, KeyError):
            continue
        finally:
            await client.aclose()
    return {}


async def in_sync(old: Any, new: Any, until: float, seen: dict[str, Any]) -> float | None:
    """When a replica is in sync again: one of the two says its link to the master is up
    (it has loaded what the master sent). ``seen``: what each said last."""
    clients = [aioredis.Redis(port=p.port, socket_timeout=0.5) for p in (old, new)]
    try:
        while time.time() < until:
            for name, client in zip(("old", "new"), clients, strict=True):
                try:
                    info = await client.info("replication")
                except (RedisError, OSError) as e:
                    seen[name] = type(e).__name__
                    continue
                seen[name] = {
                    k: v for k, v in info.items() if k in ("role", "master_link_status", "slave0")
                }
                if info.get("role") == "slave" and info.get("master_link_status") == "up":
                    return time.time()  # either: a second failover may swap them back
            await asyncio.sleep(0.05)
        return None
    finally:
        for client in clients:
            await client.aclose()


@dataclass
class Failover:
    """When Sentinel named the new master (first and all), when the old one was started
    again, and the watch for it being a replica in sync."""

    named: dict[str, float] = field(default_factory=dict)
    restarted: float | None = None
    resynced: asyncio.Task[float | None] | None = None
    replicas: dict[str, Any] = field(default_factory=dict)

    async def run(
        self, cluster: Sentinels, restart_after: float, until: float, tasks: list[Any]
    ) -> None:
        """SIGKILL the master; start it again ``restart_after`` seconds after Sentinel
        names the new one (or 30 s after the death), unless that is negative."""
        await asyncio.to_thread(cluster.master.kill)
        first = asyncio.Event()
        watch = watch_sentinels(cluster, cluster.replica.port, self.named, first)
        tasks.append(asyncio.create_task(watch))
        try:
            await asyncio.wait_for(first.wait(), 30)
        except TimeoutError:
            pass
        if restart_after < 0:
            return
        await asyncio.sleep(restart_after)
        self.restarted = time.time()
        await asyncio.to_thread(cluster.master.start)
        sync = in_sync(cluster.master, cluster.replica, until, self.replicas)
        self.resynced = asyncio.create_task(sync)
        tasks.append(self.resynced)


# --- the announcement client ----------------------------------------------------------------


@dataclass
class Key:
    """One announcement and every answer to it: (when sent, when answered, status, code)."""

    number: int
    first: float
    answers: list[tuple[float, float, int, str]] = field(default_factory=list)
    accepted: str | None = None  # the notice id of its 202


class Announcer:
    """An announcement every 50 ms, each sent again with its key after a 503, a lost
    connection or no answer in 10 s, for up to ``retry_for`` seconds."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, token: str, run: int, retry_for: float
    ) -> None:
        self.session, self.url, self.token, self.run = session, url, token, run
        self.retry_for = retry_for
        self.publish_at = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
        self.keys: list[Key] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ticker: asyncio.Task[None] | None = None

    def body(self, number: int) -> dict[str, Any]:
        return {
            "title": f"臨時のお知らせ {self.run}-{number}",
            "body": "明日の窓口の受付時間が変わります。くわしくはホームページをご覧ください。",
            "topics": ["community"],
            "areas": [],
            "channels": ["line"],
            "publish_at": self.publish_at,
        }

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        due = time.monotonic()
        while True:
            key = Key(len(self.keys), time.time())
            self.keys.append(key)
            self._tasks.append(asyncio.create_task(self._post(key)))
            due += INTERVAL
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _post(self, key: Key) -> None:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Idempotency-Key": f"failover-{self.run}-{key.number}",
        }
        body = self.body(key.number)
        while True:
            sent, wait = time.time(), 1.0
            try:
                async with self.session.post(self.url, json=body, headers=headers) as r:
                    status, text = r.status, await r.text()
                    wait = float(r.headers.get("Retry-After", "1"))
            except (aiohttp.ClientError, TimeoutError) as e:
                key.answers.append((sent, time.time(), 0, type(e).__name__))
            else:
                answer = json.loads(text) if text.startswith("{") else {}
                code = (answer.get("error") or {}).get("code", "") if status >= 400 else ""
                key.answers.append((sent, time.time(), status, code))
                if status == 202:
                    key.accepted = answer["id"]
                    return
                if status not in (429, 503) and status < 500:
                    return  # refused for good: nothing to send again
            if time.time() + wait - key.first > self.retry_for:
                return
            await asyncio.sleep(wait)

    def accepting_since(self, since: float) -> float | None:
        """When the API first answered 202 to a request sent after ``since``."""
        return min(
            (at for k in self.keys for sent, at, s, _ in k.answers if s == 202 and sent > since),
            default=None,
        )

    async def stop(self) -> None:
        """No new announcement; wait for those still being sent again."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)


def api_figures(
    keys: list[Key], killed: float, notices: dict[int, list[str]], created: dict[str, str]
) -> dict[str, Any]:
    """The API's answers, and the notices each key ended in (``notices``: their ids;
    ``created``: each one's received_at)."""
    answers = [a for k in keys for a in k.answers]
    unavailable = [at for _, at, s, _ in answers if s == 503]
    made = Counter(min(len(notices.get(k.number, [])), 2) for k in keys)
    return {
        "keys": len(keys),
        "requests": len(answers),
        "answers": dict(Counter(str(s) if s else "no answer" for _, _, s, _ in answers)),
        "503": len(unavailable),
        "503_codes": dict(Counter(c for _, _, s, c in answers if s == 503)),
        "other_5xx": len([1 for _, _, s, _ in answers if s >= 500 and s != 503]),
        "no_answer": dict(Counter(c for _, _, s, c in answers if s == 0)),
        "503_from_s": round(min(unavailable) - killed, 3) if unavailable else None,
        "503_until_s": round(max(unavailable) - killed, 3) if unavailable else None,
        "503_seconds": round(max(unavailable) - min(unavailable), 3) if unavailable else 0.0,
        "accepted": sum(1 for k in keys if k.accepted),
        "given_up": sum(1 for k in keys if not k.accepted and k.answers),
        "notices_0": made[0],
        "notices_1": made[1],
        "made_twice": made[2],
        "accepted_but_missing": sum(
            1 for k in keys if k.accepted and k.accepted not in notices.get(k.number, [])
        ),
        "twice": [  # what the first few keys that made two notices were answered
            {
                "key": k.number,
                "answers": [(round(at - killed, 3), s, c) for _, at, s, c in k.answers],
                "accepted": k.accepted,
                "notices": {i: created.get(i) for i in notices[k.number]},
            }
            for k in keys
            if len(notices.get(k.number, [])) > 1
        ][:3],
    }


# --- one run ----------------------------------------------------------------------------------


def alert_body(run: int, channels: list[str]) -> dict[str, Any]:
    return {
        "title": f"避難指示（切替試験 {run}）",
        "body": "石神井川が氾濫するおそれがあります。直ちに避難してください。" * 3,
        "severity": "emergency",
        "areas": [],
        "channels": channels,
        "url": "https://www.city.nerima.tokyo.jp/bousai/",
    }


async def start_service(
    env: dict[str, str], workers: int, level: str, folder: Path
) -> list[asyncio.subprocess.Process]:
    """`notifier serve` and workers - 1 LINE workers, each logging to service-<i>.log."""
    command = [sys.executable, "-m", "notifier", "--log-level", level]
    processes = []
    for i in range(workers):
        role = ["serve"] if i == 0 else ["worker", "--channels", "line"]
        with (folder / f"service-{i}.log").open("wb") as log:
            processes.append(
                await asyncio.create_subprocess_exec(*command, *role, env=env, cwd=ROOT, stderr=log)
            )
    return processes


def logged(folder: Path) -> dict[str, int]:
    """How often the service logged each event at warning or above."""
    found: Counter[str] = Counter()
    for path in folder.glob("service-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("level") in ("warning", "error", "critical"):
                found[f"{record['level']} {record.get('event')}"] += 1
    return dict(found.most_common())


def keep_logs(folder: Path, into: Path) -> None:
    """The service's, Redis's and the Sentinels' logs of a run, copied before cleanup."""
    into.mkdir(parents=True, exist_ok=True)
    for path in [*folder.glob("service-*.log"), *folder.glob("redis/*/*.log")]:
        name = path.name if path.parent == folder else f"{path.parent.name}-{path.name}"
        shutil.copy(path, into / name)


async def fake_json(session: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with session.get(url, params=params) as r:
        r.raise_for_status()
        return await r.json()


async def api_json(session: aiohttp.ClientSession, url: str, token: str) -> Any:
    """The API's answer, or None while it answers otherwise or not at all."""
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            return await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def run(args: argparse.Namespace, number: int) -> dict[str, Any]:
    n, m = args.subscribers, args.email
    folder = Path(tempfile.mkdtemp(prefix="notifier-failover-"))
    processes: list[Any] = []
    cluster: Sentinels | None = None
    runtime: Runtime | None = None
    tasks: list[asyncio.Task[Any]] = []
    figures: dict[str, Any] = {"run": number, "killed": not args.no_kill}
    figures["load_average"] = os.getloadavg()[0]
    try:
        cluster = await asyncio.to_thread(Sentinels, folder / "redis")
        fakes, where = await start_fakes(args.rate)
        processes.append(fakes)
        settings = load_settings(
            redis_url=cluster.master.url,
            redis_prefix=PREFIX,
            secret_key=SECRET,
            redis_sentinels=cluster.addresses,
        )
        runtime = Runtime.open(settings)
        started = time.perf_counter()
        await load(runtime, "line", n)
        if m:
            await load(runtime, "email", m)
        figures["load_s"] = round(time.perf_counter() - started, 1)
        desk = await runtime.tokens.create("emergency", "bench-desk")
        staff = await runtime.tokens.create("staff", "bench-staff")

        port = free_port()
        options = argparse.Namespace(**vars(args), redis_url=cluster.master.url, tmp=str(folder))
        env = service_env(
            options,
            PREFIX,
            port,
            where["url"],
            NOTIFIER_REDIS_SENTINELS=cluster.addresses,
            NOTIFIER_VISIBILITY_TIMEOUT=str(args.visibility),
            NOTIFIER_QUIET_HOURS="off",
            NOTIFIER_API_RATE_PER_TOKEN="1000000",  # the client's retries are not the test
            NOTIFIER_API_RATE_PER_IP="1000000",
            NOTIFIER_SMTP_HOST="127.0.0.1",
            NOTIFIER_SMTP_PORT=str(where["smtp_port"]),
            NOTIFIER_SMTP_STARTTLS="false",
            NOTIFIER_MAIL_FROM=MAIL_FROM,
        )
        processes += await start_service(env, args.workers, args.service_log, folder)
        base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await wait_ready(session, base + "/readyz")
            await asyncio.sleep(1.0)  # every worker is reading
            alert = alert_body(number, ["line", "email"] if m else ["line"])
            auth = {"Authorization": f"Bearer {desk}"}
            client = Announcer(session, base + "/api/announcements", staff, number, args.retry_for)
            posted = time.time()
            async with session.post(base + "/api/alerts", json=alert, headers=auth) as r:
                answer = await r.json()
                if r.status != 202:
                    raise RuntimeError(f"POST /api/alerts → {r.status} {answer}")
            alert_id = answer["id"]
            client.start()
            accepted_url = where["url"] + "/bench/accepted"
            of = {"contains": alert["title"], "id": alert_id}
            deadline = posted + args.timeout

            # kill the master once --kill-at of the multicasts were accepted
            expected = math.ceil(n / settings.line_batch_size)
            threshold = max(1, math.ceil(args.kill_at * expected))
            while len((await fake_json(session, accepted_url, **of))["walls"]) < threshold:
                if time.time() > deadline:
                    raise RuntimeError(f"fewer than {threshold} multicasts in {args.timeout} s")
                await asyncio.sleep(0.005)
            killed, killed_mono = time.time(), time.monotonic()  # the sink's clock: monotonic
            failover = Failover()
            if not args.no_kill:
                await failover.run(cluster, args.restart_after, deadline, tasks)

            # wait until every resident has the alert; once it says it is done, until
            # nothing more arrives for --grace seconds; at most until the deadline
            view: dict[str, Any] | None = None
            seen, changed = None, time.time()
            figures["waited"] = "the deadline"
            while time.time() < deadline:
                found = await api_json(session, f"{base}/api/alerts/{alert_id}", desk)
                view = found or view
                if view and view["status"] in ("done", "failed"):
                    counts = await fake_json(session, accepted_url, **of, distinct="1")
                    if counts["users"] >= n and counts["addresses"] >= m:
                        figures["waited"] = "everyone had it"
                        break
                    now = (len(counts["walls"]), counts["messages"])
                    seen, changed = (now, time.time()) if now != seen else (seen, changed)
                    if time.time() - changed > args.grace:
                        figures["waited"] = f"'{view['status']}', then nothing for {args.grace} s"
                        break
                await asyncio.sleep(0.2)
            # then keep posting until the API accepts again, or --retry-for after the death
            while time.time() < min(deadline, killed + args.retry_for):
                if client.accepting_since(killed) is not None:
                    break
                await asyncio.sleep(0.1)
            await client.stop()
            delivered = await fake_json(session, where["url"] + "/bench/delivered", **of)
            accepted = await fake_json(session, accepted_url, **of)
            if failover.resynced is not None:
                figures["resynced_s"] = since(await failover.resynced, killed)
                figures["replication_seen"] = failover.replicas

        # what each key ended in, on the master Sentinel names now
        wanted = {f"臨時のお知らせ {number}-{k.number}": k.number for k in client.keys}
        created: dict[str, str] = {}
        notices: dict[int, list[str]] = {}
        for item in await listed(runtime):
            if item["kind"] == "announcement" and item["notice"]["title"] in wanted:
                notices.setdefault(wanted[item["notice"]["title"]], []).append(item["id"])
                created[item["id"]] = item["notice"]["received_at"]
        walls = accepted["walls"]
        line, mail = Counter(delivered["line"]), Counter(delivered["email"])
        line_expected = {address("line", i) for i in range(n)}
        mail_expected = {address("email", i) for i in range(m)}
        figures.update(
            killed_after=len([w for w in walls if w <= killed]),
            expected_multicasts=expected,
            multicasts=len(walls),
            sentinel_first_s=since(failover.named.get("first"), killed),
            sentinel_all_s=since(failover.named.get("all"), killed),
            restarted_s=since(failover.restarted, killed),
            first_multicast_s=since(min((w for w in walls if w > killed), default=None), killed),
            resumed_s=since(
                min((w for w in walls if w > failover.named.get("first", math.inf)), default=None),
                killed,
            ),
            last_multicast_s=since(max(walls, default=None), posted),
            line_lost=len(line_expected - set(line)),
            line_duplicated=sum(1 for u, c in line.items() if c > 1 and u in line_expected),
            line_stray=len(set(line) - line_expected),
            line_copies=max(line.values(), default=0),
            email_lost=len(mail_expected - set(mail)) if m else None,
            email_duplicated=sum(1 for u, c in mail.items() if c > 1) if m else None,
            email_copies=max(mail.values(), default=0),
            email_messages=sum(mail.values()),
            email_twice_at=copy_times(delivered["email_twice"], killed_mono),
            line_statuses=delivered["statuses"],
            alert_status=view["status"] if view else None,
            alert_progress=view["progress"] if view else None,
            api=api_figures(client.keys, killed, notices, created),
            api_accepting_s=since(client.accepting_since(killed), killed),
        )
        figures["sentinel"] = await sentinel_view(cluster)
        await stop_all(processes[1:])  # the service first: it finishes against the fakes
        figures["service_log"] = logged(folder)
        return figures
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stop_all(processes[1:])
        await stop_all(processes[:1])
        if runtime is not None:
            await runtime.close()
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        if args.keep_logs:
            keep_logs(folder, Path(args.keep_logs) / f"run-{number}")
        shutil.rmtree(folder, ignore_errors=True)


def copy_times(twice: dict[str, list[float]], killed: float) -> dict[str, Any]:
    """For the addresses mailed more than once: the range of seconds from the death at
    which their first copies and their later copies were accepted."""
    firsts = [min(ats) - killed for ats in twice.values()]
    laters = [at - killed for ats in twice.values() for at in sorted(ats)[1:]]
    if not firsts:
        return {}
    return {
        "first": [round(min(firsts), 3), round(max(firsts), 3)],
        "later": [round(min(laters), 3), round(max(laters), 3)],
    }


async def listed(runtime: Runtime) -> list[dict[str, Any]]:
    """Every notice; the first command after the failover may meet a dead connection."""
    for attempt in range(5):
        try:
            return await runtime.notices.list(None, 10**6)
        except (RedisError, OSError):
            if attempt == 4:
                raise
            await asyncio.sleep(1.0)
    return []


def since(at: float | None, start: float) -> float | None:
    return None if at is None else round(at - start, 3)


# --- output -----------------------------------------------------------------------------------

ROWS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [  # label, how to read it
    ("failovers (Sentinel's epoch at the end)", lambda f: f["sentinel"].get("failovers")),
    ("death → Sentinel names new master s", lambda f: f["sentinel_first_s"]),
    ("death → every Sentinel names it s", lambda f: f["sentinel_all_s"]),
    ("death → first multicast after it s", lambda f: f["first_multicast_s"]),
    ("death → first multicast after naming s", lambda f: f["resumed_s"]),
    ("death → old master restarted s", lambda f: f.get("restarted_s")),
    ("death → a replica in sync again s", lambda f: f.get("resynced_s")),
    ("POST → last multicast s", lambda f: f["last_multicast_s"]),
    ("LINE residents lost", lambda f: f["line_lost"]),
    ("LINE residents duplicated", lambda f: f["line_duplicated"]),
    ("LINE re-sends refused (409 retry key)", lambda f: f["line_statuses"].get("409", 0)),
    ("alert progress: LINE sent", lambda f: sent(f, "line")),
    ("email addresses lost", lambda f: f["email_lost"]),
    ("email addresses duplicated", lambda f: f["email_duplicated"]),
    ("alert progress: email sent", lambda f: sent(f, "email")),
    ("API 503 answers", lambda f: f["api"]["503"]),
    ("API seconds answering 503", lambda f: f["api"]["503_seconds"]),
    ("death → API accepts again s", lambda f: f["api_accepting_s"]),
    ("API 5xx other than 503", lambda f: f["api"]["other_5xx"]),
    ("API requests without an answer", lambda f: sum(f["api"]["no_answer"].values())),
    ("announcements made twice", lambda f: f["api"]["made_twice"]),
    ("announcements 202 but missing", lambda f: f["api"]["accepted_but_missing"]),
]


def sent(figures: dict[str, Any], channel: str) -> int | None:
    progress = (figures["alert_progress"] or {}).get(channel)
    return None if progress is None else int(progress["sent"])


def show(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"


def report(figures: dict[str, Any]) -> None:
    api = figures["api"]
    print(
        f"run {figures['run']}: load average {figures['load_average']:.2f} before it;"
        f" subscribers loaded in {figures['load_s']} s"
    )
    print(
        f"  {'master killed' if figures['killed'] else 'the moment of the kill (control)'}"
        f" after {figures['killed_after']} of {figures['multicasts']} multicasts"
        f" (expected {figures['expected_multicasts']}); LINE answers {figures['line_statuses']}"
    )
    for label, read in ROWS:
        print(f"  {label:<40}{show(read(figures)):>12}")
    print(
        f"  API: {api['keys']} announcements, {api['requests']} requests, answers"
        f" {api['answers']}, 503 codes {api['503_codes']}, without an answer {api['no_answer']}"
    )
    if api["503"]:
        print(f"  API answered 503 from +{api['503_from_s']} s to +{api['503_until_s']} s")
    print(
        f"  announcements: {api['accepted']} accepted, {api['given_up']} given up;"
        f" notices per key: 0 → {api['notices_0']}, 1 → {api['notices_1']},"
        f" 2+ → {api['made_twice']}"
    )
    print(
        f"  most copies of the alert to one resident: LINE {figures['line_copies']},"
        f" email {figures['email_copies']}; LINE users not subscribed {figures['line_stray']}"
    )
    twice = figures["email_twice_at"]
    if twice:
        print(
            f"  email: {figures['email_messages']:,} messages; of the addresses mailed twice,"
            f" the first copies went out {twice['first'][0]:+.3f} to {twice['first'][1]:+.3f} s"
            f" from the death, the later ones {twice['later'][0]:+.3f} to"
            f" {twice['later'][1]:+.3f} s"
        )
    for made in api["twice"]:
        print(f"  made twice (answers: seconds from the death, status, code): {made}")
    print(f"  alert: {figures['alert_status']}, progress {figures['alert_progress']}")
    print(f"  waited until: {figures['waited']}")
    print(f"  Sentinel at the end: {figures['sentinel']}")
    print(f"  the service logged (warning and above): {figures['service_log']}")
    if figures.get("restarted_s") is not None and figures.get("resynced_s") is None:
        print(f"  no replica in sync again; Redis said last: {figures['replication_seen']}")


def summary(runs: list[dict[str, Any]]) -> None:
    print(f"summary over {len(runs)} run(s){'':<18}{'min':>12}{'median':>12}{'max':>12}")
    for label, read in ROWS:
        values = [v for v in (read(f) for f in runs) if v is not None]
        missing = len(runs) - len(values)
        cells = (min(values), statistics.median(values), max(values)) if values else (None,) * 3
        note = f"  ({missing} run(s): never)" if missing and values else ""
        print(f"{label:<42}{''.join(f'{show(c):>12}' for c in cells)}{note}")
    print(f"alert final status: {', '.join(str(f['alert_status']) for f in runs)}")


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for number in range(1, args.runs + 1):
        figures = await run(args, number)
        runs.append(figures)
        if not args.json:
            report(figures)
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=100_000, help="LINE subscribers")
    p.add_argument("--email", type=int, default=2_000, help="email subscribers (0: none)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=float, default=2000.0, help="the fake's multicast limit /s")
    p.add_argument("--workers", type=int, default=1, help="service processes sending LINE")
    p.add_argument("--concurrency", type=int, default=32, help="batches in flight per worker")
    p.add_argument("--kill-at", type=float, default=0.3, help="share of the multicasts")
    p.add_argument("--visibility", type=float, default=2.0, help="NOTIFIER_VISIBILITY_TIMEOUT")
    p.add_argument(
        "--restart-after",
        type=float,
        default=0.0,
        help="seconds after Sentinel names the new master to start the old one (-1: never)",
    )
    p.add_argument("--no-kill", action="store_true", help="a control run: the master is left alone")
    p.add_argument("--retry-for", type=float, default=60.0, help="seconds a key is sent again")
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds with nothing new that end the wait"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--service-log", default="WARNING", help="the service's log level")
    p.add_argument("--keep-logs", metavar="DIR", help="copy each run's logs there")
    p.add_argument("--serve-fakes", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_fakes is not None:
        return asyncio.run(serve_fakes(args.serve_fakes))
    for name in [k for k in os.environ if k.startswith("NOTIFIER_")]:
        del os.environ[name]  # they would win over the settings this bench gives its own
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} cores, shared with other work; fake LINE limit"
        f" {args.rate:.0f} multicasts/s, the service's NOTIFIER_LINE_RATE_LIMIT the same"
        " (LINE's own limit for multicast is 200/s)"
    )
    again = (
        f"started again {args.restart_after} s after Sentinel names the new master"
        if args.restart_after >= 0
        else "not started again"
    )
    killing = (
        f"the master SIGKILLed at {args.kill_at:.0%} of the multicasts and {again}"
        if not args.no_kill
        else f"a control run: the master left alone (times from {args.kill_at:.0%} of them)"
    )
    print(
        f"LINE subscribers {args.subscribers:,}, email {args.email:,}"
        f"{' (email: not measured)' if not args.email else ''}; {killing};"
        f" NOTIFIER_VISIBILITY_TIMEOUT {args.visibility} s; announcements every"
        f" {INTERVAL * 1000:.0f} ms, sent again for up to {args.retry_for:.0f} s"
    )
    runs = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(runs, ensure_ascii=False))
        return 0
    summary(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
