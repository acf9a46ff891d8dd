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
* at 0 ms only: the sink's own ceiling, fed by the least client there can be (asyncio
  streams, commands written by hand) over as many connections as the service's pool,
  sending the very message the service sent first N times in all, with the sink process's
  CPU use. In lock step (each reply awaited, as the sink asks: it does not offer
  PIPELINING), which is the ceiling, and pipelined, for comparison: when the sink's CPU is
  all used the two agree.

Printed: messages/s for each, the service's ratio to the sequential loop at 20 ms, and at
0 ms the service's messages/s as a share of the ceiling. The sink and the service share
the machine's cores (and the sink one of them at most): other work on it moves the figures,
so compare runs made back to back.

Run from the project root, with Redis at $NOTIFIER_REDIS_URL (default
redis://127.0.0.1:6379/0)::

    .venv/bin/python bench/email_smtp.py                  # 10,000 recipients, pool 16
    .venv/bin/python bench/email_smtp.py --pool 32
    .venv/bin/python bench/email_smtp.py --delay-ms 0     # the 0 ms sink only
    .venv/bin/python bench/email_smtp.py --recipients 2000 --sequential 500 --json

Each run's Redis keys live under a prefix of their own (``bench:<random>:``), removed at the
end with the temporary directory, also when the run fails. (The file is not called
bench/email.py: a script in bench/ runs with bench/ first on sys.path, and a module named
email there would stand in for the standard library's email package in every bench script.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

from bench.harness import OWNED_ENV as PIPELINE_ENV
from bench.harness import Report, delivered, drop_keys
from channels.email import OWN_MARK, EmailChannel
from notifier import intake, logs
from notifier.config import Settings, load_settings
from notifier.runtime import Runtime
from notifier.service import Service
from tests.smtp_sink import HOST, SmtpSink

DELAYS = (0.020, 0.0)  # seconds the sink takes per message
SENDER = "notifier@city.example.jp"
CEILING_RCPT = "resident0@example.jp"
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
        default=None,
        help="connections measuring the sink's ceiling (default: as many as the pool's)",
    )
    p.add_argument(
        "--delay-ms",
        type=float,
        action="append",
        help="the sink's delay per message; repeat for more (default: 20, then 0)",
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
    if args.recipients < 1 or args.sequential < 1 or (args.ceiling_connections or 1) < 1:
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
                        # the first and the last acceptance, on the machine's monotonic clock
                        "first_at": envelopes[0].at if envelopes else None,
                        "last_at": envelopes[-1].at if envelopes else None,
                    }
                )
                if command == "reset":  # also frees the messages kept so far
                    sink.envelopes.clear()
                    sink.connections = 0
            elif command == "sample":  # the first message accepted, as sent
                first = sink.envelopes[0].data if sink.envelopes else b""
                answer({"data": base64.b64encode(first).decode()})
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
        view, seconds = await delivered(rt, service, accepted.id, limit)
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
    token = f"bench-{i}"  # the recipient's own token, in its unsubscribe and settings links
    link = f"{settings.public_url}/unsubscribe/{token}"
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = address
    msg["Subject"] = content["subject"]
    msg["Date"] = format_datetime(datetime.now(settings.tz))
    msg["Message-ID"] = make_msgid(idstring=f"bench.{i}", domain=SENDER.rpartition("@")[2])
    msg["List-Unsubscribe"] = f"<{link}>"
    msg.set_content(content["text"].replace(OWN_MARK, token), charset="utf-8")
    msg.add_alternative(content["html"].replace(OWN_MARK, token), subtype="html")
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


async def ceiling_run(
    port: int, n: int, connections: int, data: bytes, pipelined: bool = False
) -> float:
    """n copies of one message over concurrent connections of the least client there can
    be (asyncio streams, the bytes of each command written by hand, nothing parsed but
    the reply code); the seconds taken. In lock step by default, a reply awaited before
    the next command, as the sink asks (it does not offer PIPELINING); ``pipelined`` sends
    MAIL, RCPT and DATA in one write, and the message with the next MAIL, RCPT and DATA."""
    payload = data + b".\r\n"
    commands = [
        f"MAIL FROM:<{SENDER}> SIZE={len(data)}\r\n".encode(),
        f"RCPT TO:<{CEILING_RCPT}>\r\n".encode(),
        b"DATA\r\n",
    ]

    async def reply(reader: asyncio.StreamReader, expect: bytes) -> None:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        if not line.startswith(expect):
            raise RuntimeError(f"the sink answered {line!r}, not {expect.decode()}")

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            await reply(reader, b"220")
            writer.write(b"EHLO ceiling.localhost\r\n")
            await reply(reader, b"250")
            if pipelined:
                writer.write(b"".join(commands))
            for k in range(count):
                for command, expect in zip(commands, (b"250", b"250", b"354"), strict=True):
                    if not pipelined:
                        writer.write(command)
                    await reply(reader, expect)
                more = k + 1 < count
                writer.write(payload + b"".join(commands) if pipelined and more else payload)
                await reply(reader, b"250")
            writer.write(b"QUIT\r\n")
            await reply(reader, b"221")
        finally:
            writer.close()
            await writer.wait_closed()

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
        before = sink.ask("reset")["cpu_seconds"]
        service, content = asyncio.run(service_run(settings, n, args.timeout, report))
        sample = base64.b64decode(sink.ask("sample")["data"])
        seen = sink.ask("reset")
        service |= {"sink_accepted": seen["accepted"], "sink_connections": seen["connections"]}
        service |= {"sink_cpu_seconds": round(seen["cpu_seconds"] - before, 2)}
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

        # 3. the sink's ceiling (no delay only), fed the very message the service sent first
        if delay == 0:
            connections = args.ceiling_connections or pool
            fig["ceiling"] = {"connections": connections, "message_bytes": len(sample)}
            for mode in ("lockstep", "pipelined"):
                before = sink.ask("reset")["cpu_seconds"]
                run = ceiling_run(sink.port, n, connections, sample, mode == "pipelined")
                seconds = asyncio.run(run)
                seen = sink.ask("reset")
                if seen["accepted"] != n:
                    raise RuntimeError(f"the sink accepted {seen['accepted']} of {n}")
                busy = (seen["cpu_seconds"] - before) / seconds
                fig["ceiling"][mode] = {
                    "seconds": round(seconds, 3),
                    "messages_per_s": round(per_s(n, seconds), 1),
                    "sink_cpu_busy": round(busy, 2),
                }
                say(
                    f"  sink ceiling, {mode}: {n} copies of the service's message over"
                    f" {connections} raw connections in {seconds:.2f} s"
                    f" = {per_s(n, seconds):.0f}/s (sink process CPU {busy:.0%} busy)"
                )
            ceiling = fig["ceiling"]["lockstep"]["messages_per_s"]
            share = service["messages_per_s"] / ceiling
            fig["service_share_of_ceiling"] = round(share, 3)
            say(f"  the service runs at {share:.0%} of the sink's ceiling (lock step)")
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
        delays = [ms / 1000 for ms in args.delay_ms] if args.delay_ms else DELAYS
        runs = {
            f"{run['delay_ms']}ms": run
            for run in (run_delay(args, d, tmp, prefixes, report) for d in delays)
        }
        fig["runs"] = runs
        if "20ms" in runs:
            fig["service_vs_sequential_at_20ms"] = runs["20ms"]["service_vs_sequential"]
        if "0ms" in runs:
            fig["service_share_of_ceiling_at_0ms"] = runs["0ms"]["service_share_of_ceiling"]
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
