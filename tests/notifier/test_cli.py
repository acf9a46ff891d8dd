"""The `notifier` command, run as a user runs it: in a process of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from notifier.runtime import Runtime
from tests.conftest import REDIS_URL, Api, announcement, subscriber_counts, wait_for

ROOT = Path(__file__).resolve().parents[2]


def env_for(prefix: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_REDIS_URL=REDIS_URL,
        NOTIFIER_REDIS_PREFIX=prefix,
        NOTIFIER_OUTBOX_DIR=str(tmp_path / "outbox"),
        NOTIFIER_QUIET_HOURS="off",  # the tour is tried at any hour
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def run(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        input=stdin,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def notifier(
    env: dict[str, str], *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "notifier", *args], env, cwd=cwd, stdin=stdin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_check_names_each_channel_mode_and_redis(prefix: str, tmp_path: Path) -> None:
    done = notifier(env_for(prefix, tmp_path), "check")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("redis    answers")
    assert any(
        line.startswith("line     outbox mode") and "NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN" in line
        for line in lines
    )
    assert any(line.startswith("email    outbox mode") for line in lines)
    assert any(line.startswith("x        outbox mode") for line in lines)
    live = notifier(
        env_for(
            prefix,
            tmp_path,
            NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN="t",
            NOTIFIER_LINE_CHANNEL_SECRET="s",
        ),
        "check",
    )
    assert "line     live" in live.stdout.splitlines()
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    down = notifier(env_for(prefix, tmp_path, NOTIFIER_REDIS_URL=nowhere), "check")
    assert down.returncode == 1 and "NOT ANSWERING" in down.stdout


def test_tokens_are_shown_once_and_can_be_revoked(prefix: str, tmp_path: Path) -> None:
    env = env_for(prefix, tmp_path)
    made = notifier(env, "token", "create", "--role", "staff", "--name", "広報課")
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[-1]
    assert token.startswith("ntk_") and len(token) > 40
    listed = notifier(env, "token", "list")
    assert "広報課\tstaff" in listed.stdout and token not in listed.stdout
    twice = notifier(env, "token", "create", "--role", "admin", "--name", "広報課")
    assert twice.returncode == 2 and "exists" in twice.stderr
    bad = notifier(env, "token", "create", "--role", "mayor", "--name", "x")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert notifier(env, "token", "revoke", "広報課").returncode == 0
    assert "広報課" not in notifier(env, "token", "list").stdout
    assert notifier(env, "token", "revoke", "広報課").returncode == 1


async def test_post_puts_a_checked_notice_on_the_intake_stream(
    prefix: str, tmp_path: Path, runtime: Runtime
) -> None:
    env = env_for(prefix, tmp_path)
    good = tmp_path / "notice.json"
    good.write_text(json.dumps({**announcement(), "kind": "announcement"}), encoding="utf-8")
    done = notifier(env, "post", str(good))
    assert done.returncode == 0, done.stderr
    accepted = json.loads(done.stdout)
    assert accepted["status"] == "queued"
    ((_, fields),) = await runtime.redis.xrange(runtime.keys.intake)
    assert json.loads(fields[b"notice"])["id"] == accepted["id"]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(announcement(areas=["shibuya"], title="")), encoding="utf-8")
    refused = notifier(env, "post", str(bad))
    assert refused.returncode == 1
    assert f"{bad}: title:" in refused.stderr and f"{bad}: areas: unknown area" in refused.stderr
    assert await runtime.redis.xlen(runtime.keys.intake) == 1
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    assert notifier(env, "post", str(broken)).returncode == 2


async def test_subscribers_import_reports_bad_lines_and_imports_nothing(
    prefix: str, tmp_path: Path, runtime: Runtime
) -> None:
    env = env_for(prefix, tmp_path)
    csv = tmp_path / "residents.csv"
    csv.write_text(
        "channel,address,name,areas,topics,language\n"
        "email,hanako@example.jp,,nerima,,ja\n"
        "email,taro@example,,nowhere,,ja\n",
        encoding="utf-8",
    )
    done = notifier(env, "subscribers", "import", str(csv))
    assert done.returncode == 1
    assert f"{csv}: line 3: areas: unknown area 'nowhere'" in done.stderr
    assert "nothing was imported" in done.stderr
    assert "taro@example" not in done.stderr  # personal data stays out of messages
    assert await subscriber_counts(runtime) == {"line": 0, "email": 0, "print": 0}
    csv.write_text(
        "channel,address,name,areas,topics,language\nemail,hanako@example.jp,,nerima,,ja\n",
        encoding="utf-8",
    )
    assert "1 new" in notifier(env, "subscribers", "import", str(csv)).stdout
    assert "0 new, 1 updated" in notifier(env, "subscribers", "import", str(csv)).stdout


async def test_the_tour_serve_starts_its_own_redis_and_delivers(tmp_path: Path) -> None:
    """README's tour on a machine where no Redis answers: serve starts one under ./var."""
    redis_port, http_port = free_port(), free_port()
    env = env_for(
        "tour:",
        tmp_path,
        NOTIFIER_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        NOTIFIER_HTTP_PORT=str(http_port),
        NOTIFIER_OUTBOX_DIR="./var/outbox",
    )
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "serve",
        cwd=tmp_path,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert serve.stderr is not None
    try:
        said = b""
        while b"listening on" not in said:
            said += await asyncio.wait_for(serve.stderr.readline(), 30)
        assert b"started a private one" in said
        assert (tmp_path / "var" / "redis" / "appendonly.aof").exists() or (
            tmp_path / "var" / "redis" / "appendonlydir"
        ).exists()
        made = notifier(env, "token", "create", "--role", "staff", "--name", "tour", cwd=tmp_path)
        token = made.stdout.splitlines()[-1]
        residents = tmp_path / "residents.csv"
        residents.write_text(
            "channel,address,name,areas,topics,language\n"
            "line,U0123456789abcdef0123456789abcdef,,nerima,,ja\n"
            "email,hanako@example.jp,,oizumi,,ja\n",
            encoding="utf-8",
        )
        assert notifier(env, "subscribers", "import", str(residents), cwd=tmp_path).returncode == 0
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{http_port}")
            status, body = await api.call("POST", "/api/announcements", token, announcement())
            assert status == 202

            async def finished() -> Any:
                _, found = await api.call("GET", f"/api/announcements/{body['id']}", token)
                return found if found["status"] == "done" else None

            await wait_for(finished)
        outbox = tmp_path / "var" / "outbox"
        # the email resident lives in 大泉, and the notice is for 練馬
        assert [p.parent.name for p in sorted(outbox.rglob("*.*"))] == ["line", "nerima", "x"]
    finally:
        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 30) == 0
    # the private Redis went down with the service
    ping = subprocess.run(
        ["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True, check=False
    )
    assert "PONG" not in ping.stdout


def test_serve_without_any_redis_says_how_to_get_one(tmp_path: Path) -> None:
    env = env_for(
        "none:",
        tmp_path,
        NOTIFIER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        PATH=str(Path(sys.executable).parent),
    )
    done = notifier(env, "serve", cwd=tmp_path)
    assert done.returncode == 1
    assert "apt-get install redis-server" in done.stderr
