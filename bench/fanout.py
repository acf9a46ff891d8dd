"""LINE fan-out benchmark: one whole-ward alert posted through the API to N LINE
subscribers, delivered by the service (its own processes) to a LINE-compatible server.

The server is the tests' fake LINE (bench/fake_line_server.py), in a process of its own,
holding every endpoint to LINE's published limits (multicast --rate, by default LINE's
200 requests in any second); the service runs with its own default limit
(NOTIFIER_LINE_RATE_LIMIT, unless --service-rate). Redis is a redis-server of the bench's
own (append-only, as docker-compose.yml runs it), so that its CPU is the service's alone;
--redis-url uses another. Printed: seconds from the POST to the first and to the last
accepted multicast, multicasts/s against the limit, the 429s LINE's limits gave,
recipients/s, CPU ms a multicast of the service's processes, the fake and Redis, and the
cores service and Redis take at LINE's limit, and the service's peak RSS.

In the same run, as a desk would: staff read the alert's progress through the API
(GET /api/alerts/<id>, --reads a second on a fixed schedule, from the POST until the
alert is done; p50/p99 of their answers), and once --full-speed of the multicasts were
accepted an email-only alert goes to --email subscribers through a local SMTP sink
(aiosmtpd, tests/smtp_sink.py): seconds from its POST to the first and the last mail.
The CPU figures are of everything the service did meanwhile, those included.

Also timed, after it: the way a general notification library sends — one push per user,
in sequence, through the same SDK — on --naive subscribers, and the ratio per recipient.

    .venv/bin/python bench/fanout.py                      # 100,000 subscribers
    .venv/bin/python bench/fanout.py --subscribers 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    PushMessageRequest,
)
from pydantic import SecretStr

from bench.harness import (
    ROOT,
    SECRET,
    TOKEN,
    cpu_seconds,
    drop_keys,
    free_port,
    load,
    service_env,
    start_fake_line,
    stop_all,
    wait_ready,
)
from notifier.config import load_settings
from notifier.runtime import Runtime
from tests.redis_process import RedisProcess
from tests.smtp_sink import SmtpSink

MAIL_FROM = "bousai@city.nerima.example.jp"
LINE_LIMIT = 200  # LINE's published multicast limit: requests in any second
UNLIMITED = 1e9  # the floor's fake: no limit to speak of
READERS = 4  # staff tokens the API reads take turns with (each within 600 a minute)


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def redis_cpu_seconds(runtime: Runtime) -> float:
    info = await runtime.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_command_usec(runtime: Runtime) -> dict[str, int]:
    """Microseconds Redis has spent in each command so far (INFO commandstats; a script's
    commands are counted on their own and again in its EVALSHA)."""
    info = await runtime.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["usec"]) for name, stat in info.items()}


def top_commands(
    before: dict[str, int], after: dict[str, int], requests: int, count: int = 6
) -> dict[str, float]:
    """The ``count`` commands Redis spent longest in between two readings: ms a request."""
    spent = {name: usec - before.get(name, 0) for name, usec in after.items()}
    ranked = sorted(spent.items(), key=lambda item: -item[1])[:count]
    return {name: round(usec / 1000 / max(1, requests), 3) for name, usec in ranked if usec}


async def cpu_now(runtime: Runtime, processes: list[asyncio.subprocess.Process]) -> list[float]:
    """CPU seconds so far of the service (its processes together), the fake and Redis."""
    service = sum(cpu_seconds(p.pid) for p in processes[1:])
    return [service, cpu_seconds(processes[0].pid), await redis_cpu_seconds(runtime)]


async def naive(fake_url: str, users: list[str]) -> float:
    """One push per user, in sequence, through the SDK: seconds taken."""
    config = Configuration(host=fake_url, access_token=TOKEN)
    client = AsyncApiClient(config)
    api = AsyncMessagingApi(client)
    api.line_base_path = fake_url
    message = {"type": "text", "text": "粗大ごみの収集日が変わります。"}
    started = time.perf_counter()
    for user in users:
        request = PushMessageRequest.from_dict({"to": user, "messages": [message]})
        await api.push_message(request, x_line_retry_key=str(uuid.uuid4()))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def floor(
    settings: Any,
    fake: asyncio.subprocess.Process,
    fake_url: str,
    content: dict[str, Any],
    requests: int,
    inflight: int,
) -> dict[str, float]:
    """The same number of multicasts of the same messages, 500 made-up ids each, sent from
    memory by one process through the service's LINE client (no Redis, no audience, no
    sealed ids) to a fake of their own, ``inflight`` at a time: what the SDK and the fake
    alone cost on this machine. ``floor_cores_s`` is that CPU spread over every core: no
    fan-out through this SDK to this fake can finish sooner here."""
    from linebot.v3.messaging import Message

    from channels.line import Multicast, messaging_api

    settings = settings.model_copy(
        update={"line_api_url": fake_url, "line_channel_access_token": SecretStr(TOKEN)}
    )
    client, api = messaging_api(settings, inflight)
    messages = [Message.from_dict(m) for m in content["messages"]]
    bodies = iter(range(requests))

    ids = [f"U{i:032x}" for i in range(500)]  # made before the clock starts

    async def sender() -> None:
        for _ in bodies:
            request = Multicast.construct(to=ids, messages=messages, notification_disabled=False)
            await api.multicast_with_http_info(request, x_line_retry_key=str(uuid.uuid4()))

    cpu = [time.process_time(), cpu_seconds(fake.pid)]
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(inflight)))
    seconds = time.perf_counter() - started
    used = [time.process_time() - cpu[0], cpu_seconds(fake.pid) - cpu[1]]
    await client.close()
    return {
        "floor_s": round(seconds, 3),
        "floor_cpu_ms_sender": round(used[0] * 1000 / requests, 2),
        "floor_cpu_ms_fake": round(used[1] * 1000 / requests, 2),
        "floor_cores_s": round(sum(used) / (os.cpu_count() or 1), 3),
    }


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` 0.99: p99), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Reads:
    """Staff watching an alert's progress: GET ``url`` ``per_s`` times a second on a fixed
    schedule (a slow answer does not hold the next request back), the ``tokens`` taking
    turns. Each answer's seconds and status."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, tokens: list[str], per_s: float
    ) -> None:
        self.session, self.url, self.tokens, self.per_s = session, url, tokens, per_s
        self.answers: list[tuple[float, int]] = []  # (seconds, status; 0: no answer)
        self._pending: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.per_s > 0:
            self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        due, turn = time.monotonic(), 0
        while True:
            task = asyncio.create_task(self._read(self.tokens[turn % len(self.tokens)]))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            turn += 1
            due += 1 / self.per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _read(self, token: str) -> None:
        started = time.perf_counter()
        try:
            async with self.session.get(
                self.url, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.answers.append((time.perf_counter() - started, status))

    async def stop(self) -> None:
        """No new read; wait for those under way."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await asyncio.gather(*list(self._pending), return_exceptions=True)

    def figures(self) -> dict[str, Any]:
        ok = [seconds for seconds, status in self.answers if status == 200]
        statuses: dict[str, int] = {}
        for _, status in self.answers:
            statuses[str(status)] = statuses.get(str(status), 0) + 1

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 1)

        return {
            "api_reads": len(self.answers),
            "api_statuses": statuses,
            "api_p50_ms": ms(percentile(ok, 0.50)),
            "api_p99_ms": ms(percentile(ok, 0.99)),
            "api_max_ms": ms(max(ok, default=None)),
        }


def email_alert_body() -> dict[str, Any]:
    return {
        "title": "土砂災害警戒情報",
        "body": "大雨による土砂災害の危険が高まっています。崖の近くの方は避難してください。",
        "severity": "emergency",
        "areas": [],
        "channels": ["email"],
    }


async def email_alert(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    stats_url: str,
    sink: SmtpSink,
    after: int,
    addresses: int,
    within: float,
) -> dict[str, Any]:
    """Once ``after`` multicasts were accepted, POST an email-only alert; seconds from its
    POST to the sink's first message of it and to the one that makes ``addresses``."""
    deadline = time.monotonic() + within
    while True:
        async with session.get(stats_url, params={"brief": "1"}) as response:
            accepted = (await response.json())["multicasts"]
        if accepted >= after:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {after} multicasts in {within} s")
        await asyncio.sleep(0.01)
    headers = {"Authorization": f"Bearer {token}"}
    posted = time.monotonic()
    async with session.post(
        base + "/api/alerts", json=email_alert_body(), headers=headers
    ) as response:
        answer = await response.json()
        if response.status != 202:
            raise RuntimeError(f"POST /api/alerts → {response.status} {answer}")
    wanted = answer["id"].encode()
    first: float | None = None
    last: float | None = None
    reached: set[str] = set()
    read = 0
    while time.monotonic() < deadline and len(reached) < addresses:
        envelopes = sink.envelopes[read:]
        read += len(envelopes)
        for envelope in envelopes:
            if wanted in envelope.data:
                first = envelope.at if first is None else first
                last = envelope.at
                reached.update(envelope.rcpt_tos)
        await asyncio.sleep(0.005)
    return {
        "email_after_multicasts": accepted,
        "email_first_s": None if first is None else round(first - posted, 3),
        "email_last_s": None if last is None else round(last - posted, 3),
        "email_reached": len(reached),
    }


def refused_in_metrics(text: str) -> dict[str, float]:
    """``notifier_line_refused_total`` of a /metrics page: labels → count."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("notifier_line_refused_total{"):
            labels, _, value = line.rpartition(" ")
            found[labels[len("notifier_line_refused_total") :]] = float(value)
    return found


async def start_service(
    args: argparse.Namespace, env: dict[str, str]
) -> list[asyncio.subprocess.Process]:
    """`notifier serve` (every channel) and --workers - 1 more LINE workers; or, with
    ``--layout apart``, `notifier api` beside --workers workers (the first of every
    channel, the others LINE's), as docs/operations.md scales out."""
    command = [sys.executable, "-m", "notifier", "--log-level", args.service_log]
    first = ["serve"] if args.layout == "serve" else ["api"]
    processes = [await asyncio.create_subprocess_exec(*command, *first, env=env, cwd=ROOT)]
    if args.layout == "apart":
        processes.append(
            await asyncio.create_subprocess_exec(*command, "worker", env=env, cwd=ROOT)
        )
    for _ in range(args.workers - 1):
        processes.append(
            await asyncio.create_subprocess_exec(
                *command, "worker", "--channels", "line", env=env, cwd=ROOT
            )
        )
    return processes


async def until_done(runtime: Runtime, notice_id: str, within: float) -> None:
    """Until the notice is done or failed, read from Redis (one small command each 20 ms:
    the API's figures are the readers' alone)."""
    deadline = time.monotonic() + within
    key = runtime.keys.notice(notice_id)
    while await runtime.redis.hget(key, "status") not in (b"done", b"failed"):
        if time.monotonic() > deadline:
            view = await runtime.notices.get(notice_id)
            progress = view["progress"] if view else None
            raise RuntimeError(f"not delivered in {within} s: {progress}")
        await asyncio.sleep(0.02)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    prefix = args.keep or f"bench:{uuid.uuid4().hex[:12]}:"
    folder = Path(tempfile.mkdtemp(prefix="notifier-fanout-"))
    own_redis: RedisProcess | None = None
    if args.redis_url is None:  # of its own: its CPU is the service's alone
        own_redis = RedisProcess(folder / "redis", fsync="everysec")
        await asyncio.to_thread(own_redis.start)
        args.redis_url = own_redis.url
    figures: dict[str, Any] = {
        "subscribers": args.subscribers,
        "email_subscribers": args.email,
        "rate_limit": args.rate,
        "service_rate_limit": args.service_rate,
        "layout": args.layout,
        "redis": "own" if own_redis else args.redis_url,
    }
    fake, where = await start_fake_line(args.rate)
    processes: list[asyncio.subprocess.Process] = [fake]
    sink = SmtpSink()
    sink.start()
    runtime: Runtime | None = None
    try:
        port = free_port()
        env = service_env(
            args,
            prefix,
            port,
            where["url"],
            NOTIFIER_SMTP_HOST="127.0.0.1",
            NOTIFIER_SMTP_PORT=str(sink.port),
            NOTIFIER_SMTP_STARTTLS="false",
            NOTIFIER_MAIL_FROM=MAIL_FROM,
            # every reader comes from 127.0.0.1 here; at a ward they are desks of their own
            NOTIFIER_API_RATE_PER_IP="100000",
        )
        settings = load_settings(redis_url=args.redis_url, redis_prefix=prefix, secret_key=SECRET)
        runtime = Runtime.open(settings)
        started = time.perf_counter()
        if await runtime.redis.zcard(runtime.keys.by_channel("line")) != args.subscribers:
            await load(runtime, "line", args.subscribers)
        if await runtime.redis.zcard(runtime.keys.by_channel("email")) != args.email:
            await load(runtime, "email", args.email)
        run = uuid.uuid4().hex[:8]
        token = await runtime.tokens.create("emergency", f"bench-{run}")
        staff = [await runtime.tokens.create("staff", f"bench-{run}-{i}") for i in range(READERS)]
        figures["load_s"] = round(time.perf_counter() - started, 1)

        processes += await start_service(args, env)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_ready(session, base + "/readyz")
            await asyncio.sleep(1.0)  # every worker is reading
            notice = {
                "title": "避難情報のお知らせ",
                "body": "区内全域に避難情報が出ました。最寄りの避難所を確認してください。" * 3,
                "severity": "warning",
                "areas": [],
                "channels": ["line"],
                "url": "https://www.city.nerima.tokyo.jp/bousai/",
                "translations": {
                    "en": {
                        "title": "Evacuation drill",
                        "body": "An evacuation notice for the whole city.",
                    }
                },
            }
            headers = {"Authorization": f"Bearer {token}"}
            expected = math.ceil(args.subscribers / settings.line_batch_size)
            cpu_before = await cpu_now(runtime, processes)
            commands_before = await redis_command_usec(runtime)
            posted = time.time()
            async with session.post(base + "/api/alerts", json=notice, headers=headers) as response:
                notice_id = (await response.json())["id"]
            reads = Reads(session, f"{base}/api/alerts/{notice_id}", staff, args.reads)
            reads.start()
            mail = asyncio.create_task(
                email_alert(
                    session,
                    base,
                    token,
                    where["stats"],
                    sink,
                    max(1, math.ceil(args.full_speed * expected)),
                    args.email,
                    args.timeout,
                )
            )
            try:
                await until_done(runtime, notice_id, args.timeout)
            finally:
                await reads.stop()
            cpu_used = [
                after - before
                for before, after in zip(cpu_before, await cpu_now(runtime, processes), strict=True)
            ]
            commands_after = await redis_command_usec(runtime)
            figures.update(await mail)
            figures.update(reads.figures())
            figures["service_peak_rss_mib"] = round(
                max(peak_rss_mib(p.pid) for p in processes[1:]), 1
            )
            async with session.get(where["stats"]) as response:
                stats = await response.json()
            async with session.get(base + "/metrics") as response:
                figures["service_refused_serve"] = refused_in_metrics(await response.text())
        found = await runtime.notices.get(notice_id)
        assert found is not None
        line = found["progress"]["line"]
        service_limit = args.service_rate or settings.line_rate_limit
        span = stats["last"] - stats["first"]
        multicasts = stats["multicasts"]
        figures.update(
            first_request_s=round(stats["first"] - posted, 3),
            last_request_s=round(stats["last"] - posted, 3),
            requests=multicasts,
            # intervals between the first and the last: n requests make n - 1 of them
            requests_per_s=round((multicasts - 1) / span, 1) if span > 0 else None,
            # what the service's own limit allows: its rate, and the last request's time
            # had every slot from the first one on been used
            service_limit=service_limit,
            least_last_request_s=round(
                stats["first"] - posted + (multicasts - 1) / service_limit, 3
            ),
            recipients=stats["recipients"],
            recipients_per_s=round(stats["recipients"] / (stats["last"] - posted)),
            sent=line["sent"],
            failed=line["failed"],
            statuses=stats["statuses"],
            refused=stats["refused"],
            refused_total=sum(stats["refused"].values()),
        )
        per_request = {  # CPU ms a multicast, from the POST to the notice being done
            f"cpu_ms_per_request_{part}": round(seconds * 1000 / max(1, multicasts), 3)
            for part, seconds in zip(("service", "fake", "redis"), cpu_used, strict=True)
        }
        figures.update(per_request)
        ours = per_request["cpu_ms_per_request_service"] + per_request["cpu_ms_per_request_redis"]
        figures["cores_at_limit"] = round(ours / 1000 * LINE_LIMIT, 3)
        figures["redis_commands_ms"] = top_commands(commands_before, commands_after, multicasts)
        if args.floor:
            fake_floor, where_floor = await start_fake_line(UNLIMITED)
            processes.append(fake_floor)
            rendered = await runtime.redis.hget(runtime.keys.rendered(notice_id), "line:ja")
            assert rendered is not None
            content = json.loads(rendered)
            figures.update(
                await floor(settings, fake_floor, where_floor["url"], content, multicasts, 64)
            )
        if args.naive:  # --naive 0: the comparison is left out
            naive_users = [f"U{i:032x}" for i in range(args.naive)]
            naive_s = await naive(where["url"], naive_users)
            ours_per_recipient = (stats["last"] - posted) / max(1, stats["recipients"])
            figures.update(
                naive_recipients=args.naive,
                naive_s=round(naive_s, 2),
                naive_recipients_per_s=round(args.naive / naive_s),
                speedup_per_recipient=round(naive_s / args.naive / ours_per_recipient, 1),
            )
        return figures
    finally:
        await stop_all(processes)
        sink.stop()
        if runtime is not None:
            await runtime.close()
        if own_redis is not None:
            await asyncio.to_thread(own_redis.stop)
        elif args.keep:
            print(f"kept the keys under {prefix} (drop them when done)", file=sys.stderr)
        else:
            print(f"cleanup: deleted {drop_keys(args.redis_url, prefix)} key(s)", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def targets(figures: dict[str, Any]) -> list[tuple[str, bool]]:
    """The targets (benchmarks, not tests): each one's label and whether it was met."""
    found = [
        (
            f"multicasts ≥ {0.95 * LINE_LIMIT:.0f}/s (95 % of LINE's {LINE_LIMIT})",
            (figures["requests_per_s"] or 0) >= 0.95 * LINE_LIMIT,
        ),
        (
            "service + Redis CPU ≤ 5 ms a multicast",
            figures["cpu_ms_per_request_service"] + figures["cpu_ms_per_request_redis"] <= 5,
        ),
        ("no 429 from LINE's limits", figures["refused_total"] == 0),
        ("POST → first multicast ≤ 0.1 s", figures["first_request_s"] <= 0.1),
        ("email alert: POST → first mail ≤ 1 s", (figures["email_first_s"] or 99) <= 1.0),
        ("API p99 during the fan-out ≤ 200 ms", (figures["api_p99_ms"] or 1e9) <= 200),
    ]
    if figures["subscribers"] == 1_000_000:
        found.append(("POST → last multicast ≤ 10.5 s", figures["last_request_s"] <= 10.5))
    return found


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    """The figures, for people."""
    n = figures["subscribers"]
    service_rate = figures["service_rate_limit"] or "the service's default"
    print(f"subscribers (LINE):        {n:,} (loaded in {figures['load_s']} s)")
    print(f"POST → first multicast:    {figures['first_request_s']:.3f} s")
    print(f"POST → last multicast:     {figures['last_request_s']:.3f} s")
    print(
        f"multicast requests:        {figures['requests']:,} at "
        f"{figures['requests_per_s']}/s (LINE's limit {figures['rate_limit'] or LINE_LIMIT:.0f}"
        f"/s; service: {service_rate})"
    )
    print(
        f"of the service's limit:    {figures['requests_per_s'] / figures['service_limit']:.1%} of "
        f"{figures['service_limit']:g}/s; every slot used, the last would go at "
        f"{figures['least_last_request_s']:.3f} s"
    )
    counted = (
        f"the serve process counted {figures['service_refused_serve'] or 'none'}"
        if args.layout == "serve"
        else "(the fake's count; each worker counts its own)"
    )
    print(f"429s (LINE's limits):      {figures['refused_total']} {figures['refused']}; {counted}")
    print(
        f"recipients:                {figures['recipients']:,} at "
        f"{figures['recipients_per_s']:,}/s (sent {figures['sent']:,}, "
        f"failed {figures['failed']})"
    )
    print(
        f"CPU ms a multicast:        service {figures['cpu_ms_per_request_service']}, "
        f"fake {figures['cpu_ms_per_request_fake']}, redis {figures['cpu_ms_per_request_redis']}"
        f" ({'Redis of its own' if figures['redis'] == 'own' else 'shared Redis: all clients'})"
    )
    print(f"Redis, ms a multicast in:  {figures['redis_commands_ms']}")
    print(
        f"cores at LINE's limit:     {figures['cores_at_limit']} (service + Redis, "
        f"{LINE_LIMIT} multicasts/s; {os.cpu_count()} here)"
    )
    print(
        f"email alert ({figures['email_subscribers']:,} addresses, posted after "
        f"{figures['email_after_multicasts']:,} multicasts): POST → first mail "
        f"{seconds(figures['email_first_s'])}, → last {seconds(figures['email_last_s'])} "
        f"({figures['email_reached']:,} reached)"
    )
    print(
        f"API during the fan-out:    {figures['api_reads']} reads of GET /api/alerts/<id>, "
        f"p50 {figures['api_p50_ms']} ms, p99 {figures['api_p99_ms']} ms, "
        f"max {figures['api_max_ms']} ms; answers {figures['api_statuses']}"
    )
    print(f"service peak RSS:          {figures['service_peak_rss_mib']} MiB")
    if args.floor:
        print(
            f"floor (same multicasts from memory): {figures['floor_s']:.3f} s, CPU ms a "
            f"multicast: sender {figures['floor_cpu_ms_sender']}, "
            f"fake {figures['floor_cpu_ms_fake']}; over {os.cpu_count()} cores "
            f"{figures['floor_cores_s']:.3f} s"
        )
    if "naive_s" in figures:
        print(
            f"naive (push per user):     {figures['naive_recipients']:,} in "
            f"{figures['naive_s']} s = {figures['naive_recipients_per_s']}/s"
        )
        print(f"speed-up per recipient:    {figures['speedup_per_recipient']}x")
    print(f"LINE answers:              {figures['statuses']}")
    print("targets (the issue's; benchmarks, not tests):")
    for label, met in targets(figures):
        print(f"  {label:<46}{'met' if met else 'NOT met'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help=f"the fake's multicast limit /s (default: LINE's, {LINE_LIMIT})",
    )
    p.add_argument(
        "--service-rate",
        type=float,
        default=None,
        help="NOTIFIER_LINE_RATE_LIMIT for the service (default: the service's own default)",
    )
    p.add_argument("--workers", type=int, default=1, help="service processes sending LINE")
    p.add_argument(
        "--layout",
        choices=["serve", "apart"],
        default="serve",
        help="serve: the API in the first worker's process; apart: `notifier api` alone",
    )
    p.add_argument("--concurrency", type=int, default=32, help="batches in flight per worker")
    p.add_argument("--email", type=int, default=300, help="email subscribers (the email alert)")
    p.add_argument(
        "--full-speed",
        type=float,
        default=0.2,
        help="share of the multicasts accepted before the email alert is posted",
    )
    p.add_argument("--reads", type=float, default=20.0, help="API reads a second (0: none)")
    p.add_argument("--naive", type=int, default=10_000, help="users for the naive sender (0: none)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis (default: a redis-server of the bench's own)",
    )
    p.add_argument(
        "--keep",
        metavar="PREFIX",
        help="use this Redis prefix and keep its keys: a re-run reuses the loaded subscribers"
        " (needs --redis-url)",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also time as many multicasts sent from memory (the SDK and the fake alone)",
    )
    p.add_argument("--tmp", default="/tmp/notifier-bench")
    p.add_argument("--json", action="store_true")
    p.add_argument("--service-log", default="WARNING", help="the service's log level")
    args = p.parse_args()
    if args.keep and args.redis_url is None:
        p.error("--keep needs --redis-url: a Redis of the bench's own goes with the run")
    figures = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(figures))
        return 0
    report(figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
