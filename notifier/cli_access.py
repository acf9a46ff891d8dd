"""`notifier` commands about who may act and about personal data: staff accounts for the
console, the admin-only subscriber export, and re-sealing personal data under a new key.
Each is written to the audit log."""

from __future__ import annotations

import argparse
import csv
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from notifier.tokens import ROLES

if TYPE_CHECKING:
    from notifier.cli_settings import (
        Subcommands,  # the stores load when a command runs (`notifier --help` needs none)
    )
    from notifier.config import Settings
    from notifier.keys import Keys
    from notifier.runtime import Runtime

Job = Callable[["Settings", Callable[["Runtime"], Awaitable[int]]], int]


def add_commands(sub: Subcommands, with_runtime: Job) -> None:
    a = sub.add_parser("account", help="staff accounts for the console")
    aa = a.add_subparsers(dest="action", required=True)
    s = aa.add_parser(
        "add",
        help="add an account; the password is asked for twice, or read from stdin",
        description="Add a staff account for the console. On a terminal the password is asked "
        "for twice; otherwise it is the first line of stdin, e.g. "
        "`printf '%s\\n' \"$PASSWORD\" | notifier account add yamada --role staff`.",
    )
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=ROLES)
    s.set_defaults(func=lambda st, args: account_add(st, args, with_runtime))
    aa.add_parser("list").set_defaults(func=lambda st, args: account_list(st, args, with_runtime))
    s = aa.add_parser("remove", help="remove an account; its sessions end at once")
    s.add_argument("name")
    s.set_defaults(func=lambda st, args: account_remove(st, args, with_runtime))

    s = sub.add_parser(
        "rotate-key",
        help="seal all personal data under NOTIFIER_SECRET_KEY "
        "(the old key in NOTIFIER_SECRET_KEY_PREVIOUS)",
    )
    s.set_defaults(func=lambda st, args: rotate_key(st, args, with_runtime))


def add_export(subscribers: Subcommands, with_runtime: Job) -> None:
    s = subscribers.add_parser(
        "export", help="all subscribers as CSV (admin token in NOTIFIER_TOKEN, or asked for)"
    )
    s.add_argument("--output", type=Path, help="a new file (mode 0600); default: stdout")
    s.set_defaults(func=lambda st, args: export(st, args, with_runtime))


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def account_add(settings: Settings, args: argparse.Namespace, run: Job) -> int:
    try:
        password = _password()
    except ValueError as e:
        print(f"notifier: {e}", file=sys.stderr)
        return 2

    from notifier.accounts import MIN_PASSWORD

    async def job(rt: Runtime) -> int:
        try:
            await rt.accounts.create(args.name, args.role, password)
        except ValueError as e:
            print(f"notifier: {e}", file=sys.stderr)
            return 2
        await rt.audit.local("account.add", f"account:{args.name}", "ok", grants=args.role)
        print(f"account {args.name} ({args.role}) added; passwords are {MIN_PASSWORD}+ characters")
        return 0

    return run(settings, job)


def account_list(settings: Settings, args: argparse.Namespace, run: Job) -> int:
    async def job(rt: Runtime) -> int:
        for name, role, _ in await rt.accounts.list():
            print(f"{name}\t{role}")
        return 0

    return run(settings, job)


def account_remove(settings: Settings, args: argparse.Namespace, run: Job) -> int:
    async def job(rt: Runtime) -> int:
        removed = await rt.accounts.remove(args.name)
        outcome = "ok" if removed else "missing"
        await rt.audit.local("account.remove", f"account:{args.name}", outcome)
        if not removed:
            print(f"notifier: no account named {args.name!r}", file=sys.stderr)
            return 1
        print(f"removed {args.name}")
        return 0

    return run(settings, job)


def export(settings: Settings, args: argparse.Namespace, run: Job) -> int:
    """Personal data in bulk: only with an admin token, and always in the audit log."""
    from notifier.subscribers import CSV_HEADER

    token = os.environ.get("NOTIFIER_TOKEN") or getpass.getpass("admin token: ")

    async def job(rt: Runtime) -> int:
        who = await rt.tokens.check(token.strip())
        if who is None or not who.may("admin"):
            await rt.audit.local("subscribers.export", "all", "refused")
            print("notifier: export needs an admin token (NOTIFIER_TOKEN)", file=sys.stderr)
            return 2
        if args.output is not None:
            try:  # a new file only the operator can read
                fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as e:
                print(f"notifier: {args.output}: {e.strerror}", file=sys.stderr)
                return 1
            out: TextIO = os.fdopen(fd, "w", encoding="utf-8", newline="")
        else:
            out = sys.stdout
        count = 0
        try:
            writer = csv.writer(out)
            writer.writerow(CSV_HEADER)
            async for chunk in rt.subscribers.export():
                for s in chunk:
                    row = [s.channel, s.address, s.name, " ".join(s.areas), " ".join(s.topics)]
                    writer.writerow([*row, s.language])
                count += len(chunk)
        finally:
            if out is not sys.stdout:
                out.close()
        await rt.audit.record(
            who.name, who.role, "subscribers.export", "all", "ok", "cli", count=count
        )
        print(f"exported {count} subscribers", file=sys.stderr)
        return 0

    return run(settings, job)


def rotate_key(settings: Settings, args: argparse.Namespace, run: Job) -> int:
    if settings.secret_key is None or settings.secret_key_previous is None:
        print(
            "notifier: set NOTIFIER_SECRET_KEY to the new key and NOTIFIER_SECRET_KEY_PREVIOUS "
            "to the old one, then run rotate-key",
            file=sys.stderr,
        )
        return 2

    async def job(rt: Runtime) -> int:
        try:
            count = await rt.subscribers.reseal()
            pending = await _reseal_confirmations(rt)
        except ValueError as e:  # a value neither key opens: nothing more was changed
            await rt.audit.local("rotate-key", "subscribers", "failed")
            print(f"notifier: {e}", file=sys.stderr)
            return 1
        await rt.audit.local("rotate-key", "subscribers", "ok", count=count, pending=pending)
        print(
            f"re-sealed {count} subscribers and {pending} unconfirmed subscriptions; "
            "NOTIFIER_SECRET_KEY_PREVIOUS can go once every process runs with the new key"
        )
        return 0

    return run(settings, job)


async def _reseal_confirmations(rt: Runtime) -> int:
    from notifier.streams import as_text

    keys: Keys = rt.keys
    sealer = rt.subscribers.sealer
    count = 0
    async for key in rt.redis.scan_iter(match=keys.confirmation("*"), count=500):
        value = await rt.redis.get(key)
        ttl = await rt.redis.ttl(key)
        if value is None or ttl <= 0:
            continue
        await rt.redis.set(key, sealer.seal(sealer.open(as_text(value))), ex=ttl, xx=True)
        count += 1
    return count
