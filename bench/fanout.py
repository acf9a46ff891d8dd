"""LINE fan-out benchmark: one whole-ward alert posted through the API to N LINE
subscribers, delivered by the service (its own processes) to a LINE-compatible server.

The server is the tests' fake LINE (bench/fake_line_server.py), in a process of its own,
allowing --rate multicast requests a second. Printed: seconds from the POST to the first
and to the last accepted multicast, requests/s against the limit, recipients/s, and the
service's peak RSS. In the same run, the way a general notification library sends —
one push per user, in sequence, through the same SDK — is timed on --naive subscribers,
and the ratio per recipient is printed.

    .venv/bin/python bench/fanout.py                      # 100,000 subscribers
    .venv/bin/python bench/fanout.py --subscribers 1000000 --workers 2
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from outbox import drop_keys, load  # noqa: E402

from notifier.config import load_settings  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402

TOKEN = "bench-token"
SECRET = "bench-secret-key-bench-secret-key"  # subscribers are sealed with it, as when live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_seconds(runtime: Runtime) -> float:
    info = await runtime.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def cpu_now(runtime: Runtime, processes: list[asyncio.subprocess.Process]) -> list[float]:
    """CPU seconds so far of the service (its processes together), the fake and Redis."""
    service = sum(cpu_seconds(p.pid) for p in processes[1:])
    return [service, cpu_seconds(processes[0].pid), await redis_cpu_seconds(runtime)]


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


async def start_fake_line(rate: float) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """The fake LINE server in its own process, and where it serves (url, stats)."""
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "fake_line_server.py"),
        "--rate",
        str(rate),
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
    """The environment of the service's processes: LINE live against the fake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_REDIS_URL=args.redis_url,
        NOTIFIER_REDIS_PREFIX=prefix,
        NOTIFIER_HTTP_PORT=str(port),
        NOTIFIER_SECRET_KEY=SECRET,
        NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN=TOKEN,
        NOTIFIER_LINE_CHANNEL_SECRET="bench-secret",
        NOTIFIER_LINE_API_URL=line_url,
        NOTIFIER_LINE_RATE_LIMIT=str(args.rate),
        NOTIFIER_WORKER_CONCURRENCY=str(args.concurrency),
        NOTIFIER_OUTBOX_DIR=str(Path(args.tmp) / "outbox"),
        NOTIFIER_PRINT_DIR=str(Path(args.tmp) / "print"),
        **extra,
    )
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


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    prefix = args.keep or f"bench:{uuid.uuid4().hex[:12]}:"
    figures: dict[str, Any] = {"subscribers": args.subscribers, "rate_limit": args.rate}
    fake, where = await start_fake_line(args.rate)
    processes: list[asyncio.subprocess.Process] = [fake]
    try:
        port = free_port()
        env = service_env(args, prefix, port, where["url"])
        settings = load_settings(redis_url=args.redis_url, redis_prefix=prefix, secret_key=SECRET)
        runtime = Runtime.open(settings)
        started = time.perf_counter()
        if await runtime.redis.zcard(runtime.keys.by_channel("line")) != args.subscribers:
            await load(runtime, "line", args.subscribers)
        token = await runtime.tokens.create("emergency", f"bench-{uuid.uuid4().hex[:8]}")
        figures["load_s"] = round(time.perf_counter() - started, 1)

        serve = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "--log-level",
            args.service_log,
            "serve",
            env={**env, "NOTIFIER_LINE_API_URL": where["url"]},
            cwd=ROOT,
        )
        processes.append(serve)
        for _ in range(args.workers - 1):
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "notifier",
                    "--log-level",
                    args.service_log,
                    "worker",
                    "--channels",
                    "line",
                    env=env,
                    cwd=ROOT,
                )
            )
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
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
            cpu_before = await cpu_now(runtime, processes)
            posted = time.time()
            async with session.post(base + "/api/alerts", json=notice, headers=headers) as response:
                notice_id = (await response.json())["id"]
            while True:
                async with session.get(
                    f"{base}/api/alerts/{notice_id}", headers=headers
                ) as response:
                    found = await response.json()
                if found["status"] in ("done", "failed"):
                    break
                if time.time() - posted > args.timeout:
                    raise RuntimeError(f"not delivered in {args.timeout} s: {found['progress']}")
                await asyncio.sleep(0.05)
            cpu_used = [
                after - before
                for before, after in zip(cpu_before, await cpu_now(runtime, processes), strict=True)
            ]
            figures["service_peak_rss_mib"] = round(
                max(peak_rss_mib(p.pid) for p in processes[1:]), 1
            )
            async with session.get(where["stats"]) as response:
                stats = await response.json()
        line = found["progress"]["line"]
        span = stats["last"] - stats["first"]
        figures.update(
            first_request_s=round(stats["first"] - posted, 3),
            last_request_s=round(stats["last"] - posted, 3),
            requests=stats["multicasts"],
            requests_per_s=round(stats["multicasts"] / span, 1) if span > 0 else None,
            recipients=stats["recipients"],
            recipients_per_s=round(stats["recipients"] / (stats["last"] - posted)),
            sent=line["sent"],
            failed=line["failed"],
            statuses=stats["statuses"],
        )
        per_request = {  # CPU ms a multicast, from the POST to the notice being done
            f"cpu_ms_per_request_{part}": round(seconds * 1000 / max(1, stats["multicasts"]), 2)
            for part, seconds in zip(("service", "fake", "redis"), cpu_used, strict=True)
        }
        figures.update(per_request)
        if args.floor:
            fake_floor, where_floor = await start_fake_line(args.rate)
            processes.append(fake_floor)
            rendered = await runtime.redis.hget(runtime.keys.rendered(notice_id), "line:ja")
            assert rendered is not None
            content = json.loads(rendered)
            figures.update(
                await floor(
                    settings, fake_floor, where_floor["url"], content, stats["multicasts"], 64
                )
            )
        naive_users = [f"U{i:032x}" for i in range(args.naive)]
        naive_s = await naive(where["url"], naive_users)
        ours_per_recipient = (stats["last"] - posted) / max(1, stats["recipients"])
        figures.update(
            naive_recipients=args.naive,
            naive_s=round(naive_s, 2),
            naive_recipients_per_s=round(args.naive / naive_s),
            speedup_per_recipient=round(naive_s / args.naive / ours_per_recipient, 1),
        )
        await runtime.close()
        return figures
    finally:
        await stop_all(processes)
        if args.keep:
            print(f"kept the keys under {prefix} (drop them when done)", file=sys.stderr)
        else:
            print(f"cleanup: deleted {drop_keys(args.redis_url, prefix)} key(s)", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=2000.0, help="the fake's multicast limit /s")
    p.add_argument("--workers", type=int, default=1, help="service processes sending LINE")
    p.add_argument("--concurrency", type=int, default=32, help="batches in flight per worker")
    p.add_argument("--naive", type=int, default=10_000, help="users for the naive sender")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument(
        "--redis-url", default=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument(
        "--keep",
        metavar="PREFIX",
        help="use this Redis prefix and keep its keys: a re-run reuses the loaded subscribers",
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
    figures = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(figures))
        return 0
    n = figures["subscribers"]
    print(f"subscribers (LINE):        {n:,} (loaded in {figures['load_s']} s)")
    print(f"POST → first multicast:    {figures['first_request_s']:.3f} s")
    print(f"POST → last multicast:     {figures['last_request_s']:.3f} s")
    print(
        f"multicast requests:        {figures['requests']:,} at "
        f"{figures['requests_per_s']}/s (limit {figures['rate_limit']:.0f}/s)"
    )
    print(
        f"recipients:                {figures['recipients']:,} at "
        f"{figures['recipients_per_s']:,}/s (sent {figures['sent']:,}, "
        f"failed {figures['failed']})"
    )
    print(
        f"CPU ms a multicast:        service {figures['cpu_ms_per_request_service']}, "
        f"fake {figures['cpu_ms_per_request_fake']}, redis {figures['cpu_ms_per_request_redis']}"
    )
    print(f"service peak RSS:          {figures['service_peak_rss_mib']} MiB")
    if args.floor:
        print(
            f"floor (same multicasts from memory): {figures['floor_s']:.3f} s, CPU ms a "
            f"multicast: sender {figures['floor_cpu_ms_sender']}, "
            f"fake {figures['floor_cpu_ms_fake']}; over {os.cpu_count()} cores "
            f"{figures['floor_cores_s']:.3f} s"
        )
    print(
        f"naive (push per user):     {figures['naive_recipients']:,} in "
        f"{figures['naive_s']} s = {figures['naive_recipients_per_s']}/s"
    )
    print(f"speed-up per recipient:    {figures['speedup_per_recipient']}x")
    print(f"LINE answers:              {figures['statuses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
