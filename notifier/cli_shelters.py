"""`notifier shelters …`: the ward's shelters from the national standard CSV
(notifier/shelters.py), each import in the audit log. Like `token …`, these open Redis
alone: no templates, no subscriber index."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from notifier import cli_settings

if TYPE_CHECKING:
    from notifier.audit import AuditLog
    from notifier.cli_settings import Subcommands
    from notifier.config import Settings
    from notifier.shelters import ShelterStore

Job = Callable[["ShelterStore", "AuditLog"], Awaitable[int]]


def add_commands(sub: Subcommands) -> None:
    s = sub.add_parser("shelters", help="the ward's shelters (指定緊急避難場所・指定避難所)")
    a = s.add_subparsers(dest="action", required=True)
    p = a.add_parser(
        "import",
        help="replace the shelters with a CSV in the national standard format",
        description="Replace the ward's shelters with those of FILE (the standard dataset's"
        " 指定緊急避難場所一覧 or 指定避難所一覧, plus a column 地区 with each one's area)."
        " Every bad line is reported and then nothing is imported. Shelters still in the"
        " file stay open if they were.",
    )
    p.add_argument("file", type=Path)
    p.set_defaults(func=import_file)
    a.add_parser("list", help="every shelter, and whether it is open").set_defaults(
        func=list_shelters
    )


def with_shelters(settings: Settings, job: Job) -> int:
    import asyncio

    from notifier.audit import AuditLog
    from notifier.keys import Keys
    from notifier.redis_client import close, connect
    from notifier.shelters import ShelterStore

    async def run() -> int:
        redis = connect(settings)
        keys = Keys(settings.redis_prefix)
        try:
            return await job(ShelterStore(redis, keys, settings.ward), AuditLog(redis, keys))
        finally:
            await close(redis)

    return asyncio.run(run())


def import_file(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.csv_import import ImportRefused
    from notifier.shelters import decode, parse_csv

    try:
        text = decode(args.file.read_bytes())
    except (OSError, ValueError) as e:
        print(f"notifier: can't read {args.file}: {e}", file=sys.stderr)
        return 2
    try:
        shelters = parse_csv(text, settings.ward)
    except ImportRefused as e:
        return cli_settings.refused(args.file, e)

    async def job(store: ShelterStore, audit: AuditLog) -> int:
        stored, kept = await store.replace(shelters)
        await audit.local("shelters.import", "csv", "ok", count=stored, kept_open=kept)
        print(f"imported {stored} shelter(s); {kept} of them open, as they were")
        return 0

    return with_shelters(settings, job)


def list_shelters(settings: Settings, args: argparse.Namespace) -> int:
    async def job(store: ShelterStore, audit: AuditLog) -> int:
        for state in await store.all():
            s = state.shelter
            hazards = ",".join(s.hazards) or "-"
            print(f"{s.id}\t{'open' if state.is_open else 'closed'}\t{s.area}\t{s.name}\t{hazards}")
        return 0

    return with_shelters(settings, job)
