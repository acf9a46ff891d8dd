"""What the quick commands load: `notifier --help`, `token create` and `check` must start
without the web app, the channels' SDKs, Jinja2 or WeasyPrint (bench/cli_startup.py
measures the time; here only what is imported is asserted, which does not depend on the
machine's load)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.notifier.test_cli import env_for, run

# what a quick command must not import: each costs tens to hundreds of milliseconds
HEAVY = (
    "weasyprint",
    "linebot",
    "tweepy",
    "aiosmtplib",
    "aiohttp.web",
    "jinja2",
    "apscheduler",
    "lxml",
    "argon2",
    "prometheus_client",
    "twitter_text",
    "segno",
    "channels",
    "notifier.web.app",
    "notifier.service",
    "notifier.runtime",
    "notifier.render",
    "notifier.models",
    "notifier.pdf",
)
# `--help` reads argparse alone: no settings, no Redis client
HELP_HEAVY = (*HEAVY, "pydantic", "pydantic_settings", "redis", "notifier.config")

# the command's main() in this process, then the modules it left loaded, as JSON
REPORT = """
import json, sys
from notifier.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded(env: dict[str, str], *argv: str) -> tuple[object, set[str]]:
    done = run([sys.executable, "-c", REPORT, *argv], env)
    report = json.loads(done.stderr.splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.mark.parametrize(
    ("argv", "heavy"),
    [
        (["--help"], HELP_HEAVY),
        (["token", "create", "--help"], HELP_HEAVY),
        (["token", "create", "--role", "staff", "--name", "広報課", "--replace"], HEAVY),
        (["check"], HEAVY),
    ],
)
def test_quick_commands_load_nothing_heavy(
    argv: list[str], heavy: tuple[str, ...], prefix: str, tmp_path: Path
) -> None:
    code, modules = loaded(env_for(prefix, tmp_path), *argv)
    assert code == 0
    assert "notifier.cli" in modules  # the report is of the command's own process
    assert sorted(m for m in heavy if m in modules) == []


def test_the_commands_that_need_them_still_load_them(prefix: str, tmp_path: Path) -> None:
    """The report would see a heavy import: `post` checks a notice with the models."""
    notice = tmp_path / "notice.json"
    notice.write_text("{}", encoding="utf-8")
    code, modules = loaded(env_for(prefix, tmp_path), "post", str(notice))
    assert code == 1  # the empty notice is refused, field by field
    assert "notifier.models" in modules
