"""Email benchmark: one notice to N email subscribers, sent by the service's live email
channel over its pool of SMTP connections to a real local SMTP server.

The server is the tests' SMTP sink (tests/smtp_sink.py: aiosmtpd), in a process of its own,
first taking 20 ms per message at DATA (like a relay's queue), then none. Against each:

* the service: N subscribers loaded through ``runtime.subscribers.save``, the notice through
  ``notifier.intake``, then ``Service(parts=["dispatch", "workers"], channel_names=["email"])``
  from its start until the notice is done;
* what general notification libraries do: one ``smtplib.SMTP`` connection and
  ``send_message`` per recipient in sequence, each message built like the channel's. It
  runs on --sequential recipients (1,000 by default) and is extrapolated to N when fewer;
* at 0 ms only: the sink's own ceiling, --ceiling-connections aiosmtplib connections
  sending one pre-built message N times in all, with the sink process's CPU use.

Printed: messages/s for each, the service's ratio to the sequential loop at 20 ms, and at
0 ms the service's messages/s as a share of the ceiling.

Run from the project root, with Redis at $NOTIFIER_REDIS_URL (default
redis://127.0.0.1:6379/0)::

    .venv/bin/python bench/email_smtp.py                  # 10,000 recipients, pool 4
    .venv/bin/python bench/email_smtp.py --pool 16
    .venv/bin/python bench/email_smtp.py --recipients 2000 --sequential 500 --json

Each run's Redis keys live under a prefix of their own (``bench:<random>:``), removed at the
end with the temporary directory, also when the run fails. (The file is not called
bench/email.py: a script in bench/ runs with bench/ first on sys.path, and a module named
email there would stand in for the standard library's email package in every bench script.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.smtp_sink

import aiosmtplib  # noqa: E402

from channels.email import UNSUBSCRIBE, EmailChannel  # noqa: E402
from notifier import intake, logs  # noqa: E402
from notifier.config import Settings, load_settings  # noqa: E402
from notifier.runtime import Runtime  # noqa: E402
from notifier.service import Service  # noqa: E402
from tests.smtp_sink import HOST, SmtpSink  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from outbox import OWNED_ENV as PIPELINE_ENV  # noqa: E402
from outbox import Report, drop_keys  # noqa: E402

DELAYS = (0.020, 0.0)  # seconds the sink takes per message
SENDER = "notifier@city.example.jp"
CHUNK = 5000
# settings the benchmark must own: the environment would otherwise win over them
OWNED_ENV = (
    *PIPELINE_ENV,
    "NOTIFIER_SMTP_HOST",
    "NOTIFIER_SMTP_PORT",
    "NOTIFIER_SMTP_USERNAME",
    "NOTIFIER_SMTP_PASSWORD",
    "NOTIFIER_SMTP_STARTTLS",
    "NOTIFIER_SMTP_POOL",
    "NOTIFIER_MAIL_FROM",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--recipients", type=int, default=10_000, help="N subscribers (10000)")
    p.add_argument(
        "--pool", type=int, default=None, help="the service's SMTP pool size (its default: 4)"
    )
    p.add_argument(
        "--sequential",
        type=int,
        default=1000,
        help="recipients for the one-connection smtplib loop, extrapolated to N (1000)",
    )
    p.add_argument(
        "--ceiling-connections",
        type=int,
        default=32,
        help="concurrent aiosmtplib connections measuring the sink's ceiling (32)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: $NOTIFIER_REDIS_URL or redis://127.0.0.1:6379/0",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="max seconds per delivery")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--serve-sink", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.recipients < 1 or args.sequential < 1 or args.ceiling_connections < 1:
        p.error("--recipients, --sequential and --ceiling-connections must be >= 1")
    if args.pool is not None and args.pool < 1:
        p.error("--pool must be >= 1")
    args.sequential = min(args.sequential, args.recipients)
    return args


def per_s(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# --- the sink, in a process of its own ------------------------------------------------------


def serve_sink(delay: float) -> int:
    """The child: run the sink and answer one JSON line per command read on stdin."""

    def answer(data: dict[str, Any]) -> None:
        print(json.dumps(data), flush=True)

    with SmtpSink(delay=delay) as sink:
        answer({"port": sink.port})
        for line in sys.stdin:
            command = line.strip()
            if command in ("stats", "reset"):
                envelopes = list(sink.envelopes)
                answer(
                    {
                        "accepted": len(envelopes),
                        "recipients": sum(len(e.rcpt_tos) for e in envelopes),
                        "connections": sink.connections,
                        "cpu_seconds": time.process_time(),
                    }
                )
                if command == "reset":  # also frees the messages kept so far
                    sink.envelopes.clear()
                    sink.connections = 0
            elif command == "quit":
                answer({})
                break
    return 0


class SinkProcess:
    """The parent's handle on the sink's process."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-sink", repr(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port: int = self._read(timeout=30.0)["port"]

    def _read(self, timeout: float = 30.0) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the sink process did not answer (exit code {self.proc.poll()})")
        data: dict[str, Any] = json.loads(line)
        return data

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.ask("quit")
                self.proc.wait(timeout=10)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the service ------------------------------------------------------------------------------


def subscriber_data(i: int) -> dict[str, object]:
    """A whole-ward, every-topic email subscriber in Japanese: the notice reaches them all."""
    return {
        "channel": "email",
        "address": f"resident{i}@example.jp",
        "name": f"住民{i}",
        "areas": [],
        "topics": [],
        "language": "ja",
    }


def announcement(settings: Settings) -> dict[str, Any]:
    ward = settings.ward
    return {
        "title": "粗大ごみの収集日が変わります",
        "body": "12月から粗大ごみの収集日が変わります。くわしくはホームページをご覧ください。" * 10,
        "topics": ward.topic_codes,
        "areas": ward.area_codes,
        "channels": ["email"],
        "url": "https://www.city.nerima.tokyo.jp/kurashi/gomi/",
    }


async def service_run(
    settings: Settings, n: int, limit: float, report: Report
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load n subscribers, send the notice through the service; (figures, rendered content)."""
    rt = Runtime.open(settings)
    try:
        await rt.redis.ping()
        started = time.perf_counter()
        for start in range(0, n, CHUNK):
            chunk = range(start, min(n, start + CHUNK))
            subs = [rt.subscribers.validate(subscriber_data(i)) for i in chunk]
            await rt.subscribers.save(subs)
        report.say(f"  loaded {n} subscribers in {time.perf_counter() - started:.1f} s")

        notice = intake.validate(announcement(settings), settings)
        accepted = await intake.enqueue(rt.notices, notice)
        content = EmailChannel.compose(rt.templates, notice, "ja")

        service = Service(settings, parts=["dispatch", "workers"], channel_names=["email"])
        started = time.perf_counter()
        await service.start()
        try:
            while True:
                view = await rt.notices.get(accepted.id)
                assert view is not None
                if view["status"] in ("done", "failed"):
                    break
                if time.perf_counter() - started > limit:
                    raise TimeoutError(
                        f"delivery not done after {limit:g} s:"
                        f" status {view['status']}, progress {view['progress']}"
                    )
                await asyncio.sleep(0.02)
            seconds = time.perf_counter() - started
        finally:
            await service.stop()
        progress = view["progress"]["email"]
        figures = {
            "status": view["status"],
            "sent": progress["sent"],
            "failed": progress["failed"],
            "seconds": round(seconds, 3),
            "messages_per_s": round(per_s(progress["sent"], seconds), 1),
        }
        return figures, content
    finally:
        await rt.close()


# --- the sequential loop, and the ceiling ---------------------------------------------------


def library_message(content: dict[str, Any], settings: Settings, i: int) -> EmailMessage:
    """What a notification library builds per recipient: the channel's message, same parts."""
    address = f"resident{i}@example.jp"
    link = f"{settings.public_url}/unsubscribe/bench-{i}"
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = address
    msg["Subject"] = content["subject"]
    msg["Date"] = format_datetime(datetime.now(settings.tz))
    msg["Message-ID"] = make_msgid(idstring=f"bench.{i}", domain=SENDER.rpartition("@")[2])
    msg["List-Unsubscribe"] = f"<{link}>"
    msg.set_content(content["text"].replace(UNSUBSCRIBE, link), charset="utf-8")
    msg.add_alternative(content["html"].replace(UNSUBSCRIBE, link), subtype="html")
    return msg


def sequential_run(port: int, m: int, content: dict[str, Any], settings: Settings) -> float:
    """One smtplib connection, send_message per recipient in sequence; the seconds taken."""
    started = time.perf_counter()
    with smtplib.SMTP(HOST, port, timeout=60) as smtp:
        for i in range(m):
            refused = smtp.send_message(library_message(content, settings, i))
            if refused:
                raise RuntimeError(f"the sink refused {refused}")
    return time.perf_counter() - started


async def ceiling_run(port: int, n: int, connections: int, data: bytes) -> float:
    """n pre-built messages over concurrent aiosmtplib connections; the seconds taken."""

    async def one(count: int) -> None:
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=60)
        await smtp.connect()
        try:
            for _ in range(count):
                await smtp.sendmail(
                    SENDER, ["resident0@example.jp"], data, mail_options=["BODY=8BITMIME"]
                )
        finally:
            await smtp.quit()

    shares = [n // connections + (1 if k < n % connections else 0) for k in range(connections)]
    started = time.perf_counter()
    await asyncio.gather(*(one(count) for count in shares if count))
    return time.perf_counter() - started


# --- the runs -------------------------------------------------------------------------------


def run_delay(
    args: argparse.Namespace, delay: float, tmp: Path, prefixes: list[str], report: Report
) -> dict[str, Any]:
    say = report.say
    n, m = args.recipients, args.sequential
    fig: dict[str, Any] = {"delay_ms": round(delay * 1000)}
    say(f"sink taking {delay * 1000:g} ms per message:")
    with SinkProcess(delay) as sink:
        prefix = f"bench:{uuid.uuid4().hex[:12]}:"
        prefixes.append(prefix)
        overrides: dict[str, Any] = {
            "redis_url": args.redis_url,
            "redis_prefix": prefix,
            "outbox_dir": tmp / "outbox",
            "print_dir": tmp / "print",
            "http_port": 0,
            "smtp_host": HOST,
            "smtp_port": sink.port,
            "smtp_starttls": False,
            "mail_from": SENDER,
        }
        if args.pool is not None:
            overrides["smtp_pool"] = args.pool
        settings = load_settings(**overrides)
        assert settings.redis_prefix == prefix and settings.smtp_port == sink.port
        assert settings.live("email"), settings.missing_credentials("email")
        pool = settings.smtp_pool
        fig["pool"] = pool

        # 1. the service
        service, content = asyncio.run(service_run(settings, n, args.timeout, report))
        seen = sink.ask("reset")
        service |= {"sink_accepted": seen["accepted"], "sink_connections": seen["connections"]}
        fig["service"] = service
        bound = f"; pool/delay bound {pool / delay:.0f}/s" if delay else ""
        say(
            f"  service (pool {pool}): {service['sent']} messages in {service['seconds']:.2f} s"
            f" = {service['messages_per_s']:.0f}/s (status {service['status']},"
            f" failed {service['failed']}; the sink accepted {seen['accepted']}"
            f" over {seen['connections']} connection(s){bound})"
        )
        if service["status"] != "done" or seen["accepted"] != n:
            raise RuntimeError(f"the service did not deliver all {n}: {service}, sink {seen}")

        # 2. one connection, in sequence
        seconds = sequential_run(sink.port, m, content, settings)
        seen = sink.ask("reset")
        if seen["accepted"] != m:
            raise RuntimeError(f"the sink accepted {seen['accepted']} of {m}")
        rate = per_s(m, seconds)
        fig["sequential"] = {
            "messages": m,
            "seconds": round(seconds, 3),
            "messages_per_s": round(rate, 1),
            "extrapolated": m < n,
            "seconds_for_all_recipients": round(n / rate, 1),
        }
        extra = f"; {n} would take {n / rate:.0f} s (extrapolated)" if m < n else ""
        say(
            f"  smtplib, one connection in sequence: {m} messages in {seconds:.2f} s"
            f" = {rate:.0f}/s{extra}"
        )
        fig["service_vs_sequential"] = round(service["messages_per_s"] / rate, 2)

        # 3. the sink's ceiling (no delay only)
        if delay == 0:
            data = library_message(content, settings, 0).as_bytes()
            before = sink.ask("reset")["cpu_seconds"]
            seconds = asyncio.run(ceiling_run(sink.port, n, args.ceiling_connections, data))
            seen = sink.ask("reset")
            if seen["accepted"] != n:
                raise RuntimeError(f"the sink accepted {seen['accepted']} of {n}")
            ceiling = per_s(n, seconds)
            busy = (seen["cpu_seconds"] - before) / seconds
            fig["ceiling"] = {
                "messages": n,
                "connections": args.ceiling_connections,
                "seconds": round(seconds, 3),
                "messages_per_s": round(ceiling, 1),
                "sink_cpu_busy": round(busy, 2),
            }
            share = service["messages_per_s"] / ceiling
            fig["service_share_of_ceiling"] = round(share, 3)
            say(
                f"  sink ceiling: {n} pre-built messages over {args.ceiling_connections}"
                f" aiosmtplib connections in {seconds:.2f} s = {ceiling:.0f}/s"
                f" (sink process CPU {busy:.0%} busy)"
            )
            say(f"  the service runs at {share:.0%} of the sink's ceiling")
        else:
            say(f"  the service sends {fig['service_vs_sequential']:.1f}× as fast as the loop")
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_sink is not None:
        return serve_sink(args.serve_sink)
    report = Report(args.json)
    for name in OWNED_ENV:  # the environment wins over load_settings' arguments
        os.environ.pop(name, None)
    logs.setup("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-email-"))
    prefixes: list[str] = []
    fig = report.figures
    fig |= {"recipients": args.recipients, "sequential_recipients": args.sequential}
    report.say(
        f"email bench: {args.recipients} recipients, the smtplib loop on {args.sequential}"
        f"{' (extrapolated)' if args.sequential < args.recipients else ''}"
    )
    failed = False
    try:
        runs = [run_delay(args, delay, tmp, prefixes, report) for delay in DELAYS]
        fig["runs"] = {f"{run['delay_ms']}ms": run for run in runs}
        fig["service_vs_sequential_at_20ms"] = runs[0]["service_vs_sequential"]
        fig["service_share_of_ceiling_at_0ms"] = runs[1]["service_share_of_ceiling"]
    except Exception as e:
        failed = True
        report.say(f"bench failed: {type(e).__name__}: {e}")
        raise
    finally:
        try:
            for prefix in prefixes:
                deleted = drop_keys(args.redis_url, prefix)
                report.say(f"cleanup: deleted {deleted} key(s) under {prefix}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if args.json and not failed:
            print(json.dumps(fig, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
