"""`notifier token …`: API tokens, each change in the audit log. These commands open Redis
alone (no templates, no subscriber index), so that they start at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from notifier.cli_settings import redis_place
from notifier.tokens import ROLES

if TYPE_CHECKING:
    from notifier.audit import AuditLog
    from notifier.cli_settings import Subcommands
    from notifier.config import Settings
    from notifier.tokens import TokenStore

Job = Callable[["TokenStore", "AuditLog"], Awaitable[int]]


def add_commands(sub: Subcommands) -> None:
    t = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    s = t.add_parser(
        "create",
        help="print a new token once",
        description="Print a new token once, alone on the last line; only its hash is kept.",
    )
    s.add_argument("--role", required=True, choices=ROLES)
    s.add_argument("--name", required=True)
    s.add_argument(
        "--replace",
        action="store_true",
        help="if a token of that name exists, revoke it (it stops working) and make a new one",
    )
    s.set_defaults(func=create)
    t.add_parser("list").set_defaults(func=list_tokens)
    s = t.add_parser("revoke")
    s.add_argument("name")
    s.set_defaults(func=revoke)


def with_tokens(settings: Settings, job: Job) -> int:
    import asyncio

    from notifier.audit import AuditLog
    from notifier.keys import Keys
    from notifier.redis_client import close, connect
    from notifier.tokens import TokenStore

    async def run() -> int:
        redis = connect(settings)
        keys = Keys(settings.redis_prefix)
        try:
            return await job(TokenStore(redis, keys), AuditLog(redis, keys))
        finally:
            await close(redis)

    return asyncio.run(run())


def create(settings: Settings, args: argparse.Namespace) -> int:
    name = args.name

    async def job(tokens: TokenStore, audit: AuditLog) -> int:
        exists = any(t.name == name for t in await tokens.list())
        if exists and not args.replace:
            print(
                f"notifier: a token named {name!r} exists; add --replace to revoke it and make"
                f" a new one, or run `notifier token revoke {name}` first",
                file=sys.stderr,
            )
            return 2
        if exists:
            revoked = await tokens.revoke(name)
            await audit.local("token.revoke", name, "ok" if revoked else "missing", by="replace")
        try:
            token = await tokens.create(args.role, name)
        except ValueError as e:
            print(f"notifier: {e}", file=sys.stderr)
            return 2
        await audit.local("token.create", name, "ok", grants=args.role)
        where = f"{redis_place(settings)} under {settings.redis_prefix!r}"
        replaced = "; the token it replaces no longer works" if exists else ""
        print(f"notifier: token {name} kept in {where}{replaced}", file=sys.stderr)
        print(f"Token for {name} ({args.role}); it is shown only this once:")
        print(token)
        return 0

    return with_tokens(settings, job)


def list_tokens(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    async def job(tokens: TokenStore, audit: AuditLog) -> int:
        for token in await tokens.list():
            created = datetime.fromtimestamp(token.created, UTC).isoformat(timespec="seconds")
            print(f"{token.name}\t{token.role}\t{created}")
        return 0

    return with_tokens(settings, job)


def revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def job(tokens: TokenStore, audit: AuditLog) -> int:
        revoked = await tokens.revoke(args.name)
        await audit.local("token.revoke", args.name, "ok" if revoked else "missing")
        if not revoked:
            print(f"notifier: no token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
        return 0

    return with_tokens(settings, job)
