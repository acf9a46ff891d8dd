"""Which settings a command runs with, said so that a second terminal can use the same:
the Redis and key prefix (`notifier check`, `token create`), and the NOTIFIER_* lines
`notifier serve` prints for the commands run beside it. No secret is ever shown."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from typing import TypeAlias

    # what add_subparsers() returns, to which each module adds its commands
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    from notifier.config import Settings
    from notifier.csv_import import ImportRefused

PREFIX = "NOTIFIER_"
ALWAYS = ("NOTIFIER_REDIS_URL", "NOTIFIER_REDIS_PREFIX")  # shown even when not set here
HIDDEN = "***"


def masked_url(url: str) -> str:
    """``url`` with its password (if any) as ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN}@{host}"))


def redis_place(settings: Settings) -> str:
    """Which Redis, for people: the URL with its password masked, or the Sentinels' master."""
    if settings.sentinels:
        return f"the master {settings.redis_sentinel_master!r} of NOTIFIER_REDIS_SENTINELS"
    return masked_url(settings.redis_url)


def redis_line(settings: Settings) -> str:
    """The Redis this process uses and the prefix of its keys, for `notifier check`."""
    return f"keys     under {settings.redis_prefix!r} in {redis_place(settings)}"


def for_another_terminal(settings: Settings, args: argparse.Namespace) -> str:
    """What a second terminal must run for its commands to reach this service: the folder,
    and the NOTIFIER_* variables set here (the Redis URL and prefix always); secrets are
    named, not shown."""
    from pydantic import SecretStr

    shown, secret = [], []
    for name in sorted({*(n for n in os.environ if n.startswith(PREFIX)), *ALWAYS}):
        field = name.removeprefix(PREFIX).lower()
        value = os.environ[name] if name in os.environ else str(getattr(settings, field))
        if isinstance(getattr(settings, field, None), SecretStr) or field == "token":
            secret.append(name)
        elif masked_url(value) != value:  # a URL with a password in it
            secret.append(name)
        else:
            shown.append(f"{name}={shlex.quote(value)}")
    lines = [
        "notifier: for `notifier` commands in another terminal to reach this service (the same",
        "notifier: Redis, key prefix and folders), run these there first:",
        f"    cd {shlex.quote(str(Path.cwd()))}",
        f"    export {' '.join(shown)}",
    ]
    if args.config is not None:
        config = shlex.quote(str(args.config.resolve()))
        lines.append(f"notifier: and give each command --config {config}")
    if secret:
        lines.append(f"notifier: set {', '.join(secret)} there too, as here (not shown)")
    return "\n".join(lines)


def refused(path: Path, error: ImportRefused) -> int:
    """Say each bad line of an import file, and that nothing was imported: exit status 1."""
    for line in error.errors:
        print(f"{path}: {line}", file=sys.stderr)
    print(f"notifier: {error}", file=sys.stderr)
    return 1
