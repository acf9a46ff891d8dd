"""The `notifier` command.

Each command imports what it needs when it runs: `notifier --help` reads argparse alone,
`token …` and `check` Redis and the settings, and only the commands that use them load
the web app, the channels' SDKs, Jinja2 or WeasyPrint (tests/notifier/test_cli_startup.py
keeps it so)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from notifier import cli_access, cli_settings, cli_shelters, cli_tokens

if TYPE_CHECKING:
    from notifier.config import Settings
    from notifier.runtime import Runtime


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError
    from redis.exceptions import RedisError

    from notifier import logs
    from notifier.config import load_settings

    try:
        settings = load_settings(args.config)
    except (OSError, ValidationError) as e:
        print(f"notifier: bad configuration: {e}", file=sys.stderr)
        return 2
    logs.setup(args.log_level)
    try:
        result: int = args.func(settings, args)
        return result
    except RedisError as e:
        from notifier.redis_client import where
        from notifier.redis_server import HOW_TO_GET_REDIS

        print(
            f"notifier: Redis error: {e}\n{HOW_TO_GET_REDIS.format(url=where(settings))}",
            file=sys.stderr,
        )
        return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="notifier", description="The ward's notice service.")
    p.add_argument("--config", type=Path, help="TOML file (default: config/notifier.toml)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "serve", help="api, workers and scheduler in one process; says what another terminal sets"
    )
    s.set_defaults(func=cmd_serve, parts=None)  # None: every part
    s = sub.add_parser("api", help="the HTTP api alone")
    s.set_defaults(func=cmd_run, parts=("api",))
    s = sub.add_parser("worker", help="dispatcher and channel workers")
    s.add_argument("--channels", help="comma-separated channels (default: all)")
    s.set_defaults(func=cmd_run, parts=("dispatch", "workers"))
    s = sub.add_parser("scheduler", help="releases scheduled notices when due")
    s.set_defaults(func=cmd_run, parts=("scheduler",))

    cli_tokens.add_commands(sub)

    subs = sub.add_parser("subscribers", help="subscriber data")
    sa = subs.add_subparsers(dest="action", required=True)
    s = sa.add_parser("import", help="import a CSV: channel,address,name,areas,topics,language")
    s.add_argument("file", type=Path)
    s.set_defaults(func=cmd_subscribers_import)
    cli_access.add_export(sa, with_runtime)
    cli_access.add_commands(sub, with_runtime)
    cli_shelters.add_commands(sub)

    s = sub.add_parser("post", help="put a notice on the intake stream from a JSON file")
    s.add_argument("file", type=Path)
    s.set_defaults(func=cmd_post)

    s = sub.add_parser("digest", help="build the printed digest now (last week's, or --now)")
    s.add_argument("--area", help="one area's code (default: every area)")
    s.add_argument("--now", action="store_true", help="this week so far, not last week")
    s.set_defaults(func=cmd_digest)

    sub.add_parser(
        "check", help="which channels are live; which Redis and key prefix; whether it answers"
    ).set_defaults(func=cmd_check)
    return p


def with_runtime(settings: Settings, job: Callable[[Runtime], Awaitable[int]]) -> int:
    import asyncio

    from notifier.runtime import Runtime

    async def run() -> int:
        runtime = Runtime.open(settings)
        try:
            await runtime.subscribers.upgrade_index()  # an index from before it was ordered
            return await job(runtime)
        finally:
            await runtime.close()

    return asyncio.run(run())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.redis_server import start_private

    try:  # a trial's private Redis; under Sentinel the operator runs Redis
        private = (
            None
            if settings.sentinels
            else start_private(settings.redis_url, settings.outbox_dir.parent)
        )
    except RuntimeError as e:
        print(f"notifier: {e}", file=sys.stderr)
        return 1
    if private is not None:
        print(
            "notifier: no Redis was answering; started a private one at "
            f"{cli_settings.masked_url(settings.redis_url)}"
            f" (append-only, data in {settings.outbox_dir.parent / 'redis'})",
            file=sys.stderr,
        )
    try:
        return cmd_run(settings, args, announce=cli_settings.for_another_terminal(settings, args))
    finally:
        if private is not None:
            private.terminate()
            private.wait(timeout=30)


def cmd_run(settings: Settings, args: argparse.Namespace, announce: str = "") -> int:
    """Run the chosen parts until SIGTERM or SIGINT; ``announce`` is said once listening."""
    import asyncio
    import signal

    from notifier.channel_registry import names as channel_names
    from notifier.redis_client import survey, where
    from notifier.redis_server import HOW_TO_GET_REDIS
    from notifier.service import PARTS, CannotListen, Service

    chosen = getattr(args, "channels", None)
    wanted = ",".join(channel_names()) if chosen is None else chosen
    names = [c.strip() for c in wanted.split(",") if c]
    unknown = [n for n in names if n not in channel_names()]
    if unknown:
        print(f"notifier: unknown channel(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    live = [c for c in channel_names() if settings.live(c)]
    if live and settings.secret_key is None:
        print(
            f"notifier: {', '.join(live)} will hold residents' addresses: set "
            "NOTIFIER_SECRET_KEY (a long random string) to protect them",
            file=sys.stderr,
        )
        return 2
    ok, found = survey(settings)
    if not ok:
        print(f"notifier: {HOW_TO_GET_REDIS.format(url=where(settings))}", file=sys.stderr)
        for line in found[:-1] if settings.sentinels else []:
            print(f"notifier: {line}", file=sys.stderr)
        return 1

    async def run() -> int:
        service = Service(settings, parts=args.parts or PARTS, channel_names=names)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.request_stop)
        try:
            await service.start()
        except CannotListen as e:
            await service.runtime.close()
            print(f"notifier: {e}", file=sys.stderr)
            return 1
        if service.port is not None:
            print(
                f"notifier: listening on http://{settings.http_host}:{service.port}",
                file=sys.stderr,
            )
        if announce:
            print(announce, file=sys.stderr)
        await service.wait()
        await service.stop()
        return 0

    return asyncio.run(run())


def cmd_subscribers_import(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.csv_import import ImportRefused
    from notifier.subscribers import parse_csv

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"notifier: can't read {args.file}: {e}", file=sys.stderr)
        return 2

    async def job(rt: Runtime) -> int:
        try:
            subscribers = parse_csv(text, rt.subscribers)
        except ImportRefused as e:
            return cli_settings.refused(args.file, e)
        results = await rt.subscribers.save(subscribers)
        new = sum(1 for _, created in results if created)
        await rt.audit.local("subscribers.import", "csv", "ok", count=len(results), new=new)
        print(f"imported {len(results)} subscriber(s): {new} new, {len(results) - new} updated")
        return 0

    return with_runtime(settings, job)


def cmd_post(settings: Settings, args: argparse.Namespace) -> int:
    from notifier import intake
    from notifier.models import Invalid

    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"notifier: can't read {args.file} as JSON: {e}", file=sys.stderr)
        return 2
    if isinstance(data, dict) and data.get("kind") == "announcement":
        del data["kind"]  # the queue's form of a notice is welcome here too
    try:
        notice = intake.validate(data, settings)
    except Invalid as e:
        for field, message in e.fields.items():
            print(f"{args.file}: {field}: {message}", file=sys.stderr)
        return 1

    async def job(rt: Runtime) -> int:
        accepted = await intake.enqueue(rt.notices, notice)
        print(json.dumps({"id": accepted.id, "status": accepted.status}))
        return 0

    return with_runtime(settings, job)


def cmd_digest(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.digest import DigestBuilder, Period, week_before, week_of
    from notifier.pdf import PdfMaker, processes_for_digest

    if args.area is not None and args.area not in settings.ward.area_codes:
        known = ", ".join(settings.ward.area_codes)
        print(f"notifier: unknown area {args.area!r}; known: {known}", file=sys.stderr)
        return 2
    now = datetime.now(settings.tz)
    period = Period(week_of(now).start, now) if args.now else week_before(now)

    async def job(rt: Runtime) -> int:
        pdf = PdfMaker(processes_for_digest())
        try:
            builder = DigestBuilder(rt, pdf)
            written = await builder.build(period, [args.area] if args.area else None)
        finally:
            pdf.close()
        print(f"digest {period.label} ({period.text}):")
        for path in written:
            print(f"  {path}")
        return 0

    return with_runtime(settings, job)


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.channel_registry import REGISTRY
    from notifier.redis_client import survey

    ok, found = survey(settings)
    for line in found:
        print(line)
    print(cli_settings.redis_line(settings))
    for channel, spec in REGISTRY.items():
        missing = settings.missing_credentials(channel)
        if not spec.live:
            print(f"{channel:<8} {spec.writes.format(settings=settings)}")
        elif missing:
            print(
                f"{channel:<8} outbox mode, writing to {settings.outbox_dir / channel}"
                f" (not set: {', '.join(missing)})"
            )
        else:
            print(f"{channel:<8} live")
    if settings.secret_key is None:
        print("secret   NOTIFIER_SECRET_KEY is not set: fine for a trial, set it in production")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
