"""Alert latency: seconds from the POST of an alert to its first request on each channel,
with nothing queued and with a routine notice's backlog queued ahead of it.

The service runs as `notifier serve` in its own process with every channel live: LINE
against the tests' fake LINE (bench/fake_line_server.py, its own process, 2,000
multicasts a second), X against the tests' fake X and email against the tests' aiosmtpd
sink (both in this process), print writing its flyers. Subscribers: --line on LINE and
--email by email, everyone in the whole ward. The alert is a whole-ward evacuation order.

1. nothing queued: POST the alert, time each channel's first request.
2. backlog: POST a routine announcement to every subscriber; once --backlog of its LINE
   recipients are queued and not yet sent, POST the alert.

    .venv/bin/python bench/alert_latency.py     # 400,000 LINE, 2,000 email; 200,000 queued
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness
from notifier import channel_registry
from notifier.config import load_settings
from notifier.runtime import Runtime
from tests.conftest import X_CREDENTIALS
from tests.fake_x import FakeX
from tests.smtp_sink import SmtpSink

CHANNELS = channel_registry.names()


class Watch:
    """Where each channel's first request for an alert shows up."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        line_stats: str,
        fake_x: FakeX,
        sink: SmtpSink,
        print_dir: Path,
    ) -> None:
        self.session = session
        self.line_stats = line_stats
        self.fake_x = fake_x
        self.sink = sink
        self.print_dir = print_dir

    async def firsts(
        self,
        alert_id: str,
        title: str,
        wall: float,
        mono: float,
        within: float,
        channels: tuple[str, ...] = CHANNELS,
    ) -> dict[str, float | None]:
        """Seconds from the POST (``wall``/``mono``) to each channel's first request."""
        found: dict[str, float | None] = dict.fromkeys(channels)
        deadline = mono + within
        while time.monotonic() < deadline and None in found.values():
            if "line" in found and found["line"] is None:
                async with self.session.get(self.line_stats, params={"contains": title}) as r:
                    first = (await r.json())["first"]
                if first is not None:
                    found["line"] = first - wall
            if "x" in found and found["x"] is None:
                posts = [p for p in self.fake_x.posts if title in p["text"]]
                if posts:
                    found["x"] = posts[0]["at"] - mono
            if "email" in found and found["email"] is None:
                mails = [e for e in list(self.sink.envelopes) if alert_id.encode() in e.data]
                if mails:
                    found["email"] = mails[0].at - mono
            if "print" in found and found["print"] is None:
                flyers = list((self.print_dir / "alerts").glob(f"{alert_id}-*.pdf"))
                if flyers:
                    found["print"] = min(f.stat().st_mtime for f in flyers) - wall
            await asyncio.sleep(0.005)
        return found


async def post(
    session: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any]
) -> tuple[str, float, float]:
    wall, mono = time.time(), time.monotonic()
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        answer = await r.json()
        if r.status != 202:
            raise RuntimeError(f"POST {url} → {r.status} {answer}")
    return answer["id"], wall, mono


async def until_done(
    session: aiohttp.ClientSession, url: str, token: str, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            found: dict[str, Any] = await r.json()
        if found["status"] in ("done", "failed"):
            return found
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not done in {within} s")


def alert(run: str) -> dict[str, Any]:
    return {
        "title": f"避難指示（{run}）",
        "body": "石神井川が氾濫するおそれがあります。直ちに避難してください。",
        "severity": "emergency",
        "areas": [],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    tmp = Path(args.tmp) / prefix.replace(":", "-")
    figures: dict[str, Any] = {"line_subscribers": args.line, "email_subscribers": args.email}
    fake_line, where = await harness.start_fake_line(args.rate)
    processes = [fake_line]
    fake_x = FakeX()
    await fake_x.start()
    sink = SmtpSink()
    sink.start()
    runtime = None
    try:
        port = harness.free_port()
        args.tmp = str(tmp)
        env = harness.service_env(
            args,
            prefix,
            port,
            where["url"],
            NOTIFIER_QUIET_HOURS="off",
            NOTIFIER_X_API_URL=fake_x.url,
            NOTIFIER_X_DAILY_LIMIT="1000",
            NOTIFIER_SMTP_HOST="127.0.0.1",
            NOTIFIER_SMTP_PORT=str(sink.port),
            NOTIFIER_SMTP_STARTTLS="false",
            NOTIFIER_MAIL_FROM="bousai@city.nerima.example.jp",
            **{f"NOTIFIER_{k.upper()}": v for k, v in X_CREDENTIALS.items()},
        )
        settings = load_settings(
            redis_url=args.redis_url, redis_prefix=prefix, secret_key=harness.SECRET
        )
        runtime = Runtime.open(settings)
        started = time.perf_counter()
        await harness.load(runtime, "line", args.line)
        await harness.load(runtime, "email", args.email)
        figures["load_s"] = round(time.perf_counter() - started, 1)
        desk = await runtime.tokens.create("emergency", "bench")
        serve = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "--log-level",
            "WARNING",
            "serve",
            env=env,
            cwd=harness.ROOT,
        )
        processes.append(serve)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await harness.wait_ready(session, base + "/readyz")
            await asyncio.sleep(1.0)  # every worker is reading
            watch = Watch(session, where["stats"], fake_x, sink, tmp / "print")

            # 1. nothing queued
            body = alert("訓練なし")
            alert_id, wall, mono = await post(session, base + "/api/alerts", desk, body)
            figures["idle"] = await watch.firsts(alert_id, body["title"], wall, mono, args.timeout)
            await until_done(session, f"{base}/api/alerts/{alert_id}", desk, args.timeout)

            # 2. a routine backlog ahead of it
            routine = {
                "title": "粗大ごみの収集日が変わります",
                "body": "12月から粗大ごみの収集日が変わります。" * 5,
                "topics": settings.ward.topic_codes,  # every subscriber
                "areas": [],
            }
            routine_id, _, _ = await post(session, base + "/api/announcements", desk, routine)
            auth = {"Authorization": f"Bearer {desk}"}
            while True:  # wait until --backlog of its recipients are queued, not yet sent
                async with session.get(f"{base}/api/announcements/{routine_id}", headers=auth) as r:
                    found = await r.json()
                line = found["progress"]["line"]
                if line["pending"] >= args.backlog or line["recipients"] == args.line:
                    break
                await asyncio.sleep(0.005)
            progress = found["progress"]
            body = alert("後続")
            alert_id, wall, mono = await post(session, base + "/api/alerts", desk, body)
            figures["backlog_queued"] = {
                c: progress[c]["pending"] for c in ("line", "email") if c in progress
            }
            figures["backlog"] = await watch.firsts(
                alert_id, body["title"], wall, mono, args.timeout
            )
            await until_done(session, f"{base}/api/alerts/{alert_id}", desk, args.timeout)
            await until_done(session, f"{base}/api/announcements/{routine_id}", desk, args.timeout)
        return figures
    finally:
        await harness.stop_all(processes)
        await fake_x.stop()
        sink.stop()
        if runtime is not None:
            await runtime.close()
        print(
            f"cleanup: deleted {harness.drop_keys(args.redis_url, prefix)} key(s)", file=sys.stderr
        )


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--line", type=int, default=400_000, help="LINE subscribers")
    p.add_argument("--backlog", type=int, default=200_000, help="routine LINE recipients queued")
    p.add_argument("--email", type=int, default=2_000, help="email subscribers")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="the fake's multicast limit /s (default: LINE's table, 200)",
    )
    p.add_argument(
        "--service-rate",
        type=float,
        default=None,
        help="NOTIFIER_LINE_RATE_LIMIT for the service (default: the service's own, 190)",
    )
    p.add_argument("--concurrency", type=int, default=32, help="batches in flight per worker")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument(
        "--redis-url", default=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument("--tmp", default="/tmp/notifier-bench")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    figures = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"subscribers: {figures['line_subscribers']:,} LINE, {figures['email_subscribers']:,}"
        f" email (loaded in {figures['load_s']} s)"
    )
    queued = ", ".join(f"{c} {n:,}" for c, n in figures["backlog_queued"].items())
    print(f"routine recipients still queued at the alert's POST: {queued}")
    print(f"{'POST → first request':<24}{'nothing queued':>16}{'routine backlog':>18}")
    for channel in CHANNELS:
        idle, busy = figures["idle"][channel], figures["backlog"][channel]
        print(f"{channel:<24}{seconds(idle):>16}{seconds(busy):>18}")
    worst = max((v for run in ("idle", "backlog") for v in figures[run].values() if v), default=0)
    print(f"target ≤ 1 s on every channel in both runs: {'met' if worst <= 1.0 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
