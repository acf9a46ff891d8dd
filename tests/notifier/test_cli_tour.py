"""The README's tour as an operator meets it: run again, in a second terminal, on a port
another program holds."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from notifier.cli_settings import masked_url
from notifier.runtime import Runtime
from tests.conftest import REDIS_URL
from tests.notifier.test_cli import ROOT, env_for, free_port, notifier, run


async def test_token_create_replace_makes_the_tour_rerunnable(
    prefix: str, tmp_path: Path, runtime: Runtime
) -> None:
    env = env_for(prefix, tmp_path)
    first = notifier(env, "token", "create", "--role", "staff", "--name", "広報課")
    assert first.returncode == 0, first.stderr
    old = first.stdout.splitlines()[-1]

    again = notifier(env, "token", "create", "--role", "staff", "--name", "広報課")
    assert again.returncode == 2 and again.stdout == ""  # `TOKEN=$(… | tail -n 1)` gets nothing
    assert "exists" in again.stderr and "--replace" in again.stderr
    assert await runtime.tokens.check(old) is not None  # refused: nothing changed

    replaced = notifier(env, "token", "create", "--role", "staff", "--name", "広報課", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    new = replaced.stdout.splitlines()[-1]
    assert new.startswith("ntk_") and new != old
    assert "no longer works" in replaced.stderr and prefix in replaced.stderr
    assert await runtime.tokens.check(old) is None
    found = await runtime.tokens.check(new)
    assert found is not None and found.name == "広報課" and found.role == "staff"
    actions = [(e["action"], e["outcome"]) for e in reversed(await runtime.audit.recent())]
    assert actions == [("token.create", "ok"), ("token.revoke", "ok"), ("token.create", "ok")]

    fresh = notifier(env, "token", "create", "--role", "admin", "--name", "新しい", "--replace")
    assert fresh.returncode == 0 and "no longer works" not in fresh.stderr  # nothing to replace


def test_a_taken_port_is_one_line_naming_it_and_the_setting(prefix: str, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = env_for(
            prefix, tmp_path, NOTIFIER_HTTP_PORT=str(port), NOTIFIER_PRINT_WARM_UP="false"
        )
        for command in ("serve", "api"):
            done = notifier(env, command, cwd=tmp_path)
            assert done.returncode == 1
            assert "Traceback" not in done.stderr
            (line,) = done.stderr.splitlines()
            assert line.startswith(f"notifier: can't listen on 127.0.0.1:{port}")
            assert "NOTIFIER_HTTP_PORT" in line


async def test_serve_says_what_a_second_terminal_needs(prefix: str, tmp_path: Path) -> None:
    """The lines serve prints, run in a terminal with none of its settings, reach it."""
    port = free_port()
    env = env_for(
        prefix,
        tmp_path,
        NOTIFIER_HTTP_PORT=str(port),
        NOTIFIER_PRINT_WARM_UP="false",
        NOTIFIER_SECRET_KEY="a-secret-the-lines-must-not-show",
    )
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "notifier", "serve", cwd=tmp_path, env=env, stderr=subprocess.PIPE
    )
    assert serve.stderr is not None
    try:
        said: list[str] = []
        while not said or "NOTIFIER_SECRET_KEY" not in said[-1]:
            line = (await asyncio.wait_for(serve.stderr.readline(), 30)).decode()
            assert line, "".join(said)  # serve ended before it said so
            said.append(line)
        text = "".join(said)
        assert "a-secret-the-lines-must-not-show" not in text
        run_there = [line.strip() for line in said if line.startswith("    ")]
        assert run_there[0] == f"cd {shlex.quote(str(tmp_path))}"
        assert f"NOTIFIER_REDIS_PREFIX={shlex.quote(prefix)}" in run_there[1]

        elsewhere = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        elsewhere["PYTHONPATH"] = str(ROOT)
        script = " && ".join([*run_there, f"{shlex.quote(sys.executable)} -m notifier token"])
        made = run(
            ["bash", "-c", f"{script} create --role staff --name second | tail -n 1"], elsewhere
        )
        token = made.stdout.strip()
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/announcements"
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
                assert answer.status == 200, made.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 30) == 0


def test_check_names_the_redis_and_prefix_without_its_password(prefix: str, tmp_path: Path) -> None:
    done = notifier(env_for(prefix, tmp_path), "check")
    assert f"keys     under {prefix!r} in {REDIS_URL}" in done.stdout.splitlines()
    secret_url = REDIS_URL.replace("redis://", "redis://ward:hunter2-pass@")
    masked = notifier(env_for(prefix, tmp_path, NOTIFIER_REDIS_URL=secret_url), "check")
    assert "hunter2-pass" not in masked.stdout + masked.stderr
    assert f"in {REDIS_URL.replace('redis://', 'redis://ward:***@')}" in masked.stdout


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert masked_url("redis://:pw@h:1/2") == "redis://:***@h:1/2"
    assert masked_url("rediss://user:p%40ss@h/0") == "rediss://user:***@h/0"
    assert masked_url("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"


def test_account_add_says_the_password_may_come_from_stdin(tmp_path: Path) -> None:
    done = notifier(env_for("help:", tmp_path), "account", "add", "--help")
    assert done.returncode == 0
    assert "stdin" in done.stdout and "terminal" in done.stdout
