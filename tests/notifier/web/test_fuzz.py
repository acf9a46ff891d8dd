"""Schemathesis against the real service, in processes of its own: every operation of
GET /api/openapi.json, with each role's token and with none, data the document allows and
data it does not. No answer may be a 5xx, or have a status, content type or body the
document does not give that operation; and a token without an operation's role never
gets a 2xx. The seed is fixed: a failure reproduces."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.tokens import GRANTS
from notifier.web.openapi import document
from tests.conftest import LINE_SECRET, REDIS_URL, ROOT, line_settings, make_settings, worker_env

SEED = 20261126
MAX_EXAMPLES = 25  # generated cases per operation and role, positive and negative together
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
LIMITS = {"api_rate_per_token": 1_000_000, "api_rate_per_ip": 1_000_000}  # never a 429
# the document the service serves with these settings (the fixture checks it is the same)
DOCUMENT = document(make_settings(Path("unused"), "unused:", **LIMITS))
# CAP documents are sent as the text they are (the document's schema is a string)
schemathesis.serializer.alias(["application/cap+xml", "application/xml", "text/xml"], "text/plain")


def fuzzer(*phases: str, tokens: bool) -> BaseSchema:
    """``tokens``: the runs send a role's token on every request; else the fuzzer makes up
    the Authorization header too (or leaves it out)."""
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.config.phases.update(phases=list(phases))
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
        with_security_parameters=not tokens,
    )
    schema.config.seed = SEED
    return schema


# admin may do everything, so its runs reach every handler: they add the coverage phase
# (each parameter's and field's boundaries, missing and wrongly typed values: about 1,400
# requests); the other roles' runs check what they may and may not do
everything = fuzzer("examples", "coverage", "fuzzing", tokens=True)
some = fuzzer("examples", "fuzzing", tokens=True)
anonymous = fuzzer("examples", "fuzzing", tokens=False)


@dataclass
class Served:
    base: str
    tokens: dict[str, str]
    http: requests.Session
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API and the LINE, X and email workers, run as `notifier api` and `notifier
    worker` (print is left out: a flyer per fuzzed alert would take the CPU)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    prefix = f"test:fuzz:{uuid.uuid4().hex[:12]}:"
    nowhere = f"http://127.0.0.1:{free_port()}"  # LINE is live, and unreachable
    settings = line_settings(tmp, prefix, nowhere, **LIMITS)
    port = free_port()
    env = worker_env(
        settings,
        NOTIFIER_HTTP_PORT=str(port),
        NOTIFIER_PRINT_DIR=str(settings.print_dir),
        NOTIFIER_API_RATE_PER_TOKEN=str(settings.api_rate_per_token),
        NOTIFIER_API_RATE_PER_IP=str(settings.api_rate_per_ip),
        NOTIFIER_LINE_TIMEOUT="0.5",
        NOTIFIER_RETRY_BASE_DELAY="0.05",
    )
    tokens = asyncio.run(_tokens(settings))
    log = tmp / "service.log"
    with log.open("wb") as out:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "notifier", *args], env=env, cwd=ROOT, stdout=out, stderr=out
            )
            for args in (["api"], ["worker", "--channels", "line,x,email"])
        ]
    base = f"http://127.0.0.1:{port}"
    http = requests.Session()
    try:
        _wait_until_up(http, base, processes[0], log)
        doc = http.get(f"{base}/api/openapi.json", timeout=5).json()
        assert doc == DOCUMENT, "the service serves another document than the tests read"
        yield Served(base, tokens, http, log)
    finally:
        http.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _drop(prefix)
    codes = [process.returncode for process in processes]
    assert codes == [0, 0], f"the service did not stop cleanly ({codes}): see {log}"


async def _tokens(settings: Settings) -> dict[str, str]:
    runtime = Runtime.open(settings)
    try:
        return {role: await runtime.tokens.create(role, f"fuzz-{role}") for role in GRANTS}
    finally:
        await runtime.close()


def _wait_until_up(
    http: requests.Session, base: str, api: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError(f"notifier api exited: {log.read_text()[-2000:]}")
        try:
            if http.get(f"{base}/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"notifier api did not answer: {log.read_text()[-2000:]}")


def _drop(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["admin"])
@everything.parametrize()
def test_an_admin_finds_the_service_keeping_to_its_document(
    case: schemathesis.Case, served: Served, role: str
) -> None:
    call(case, served, role)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["staff", "emergency"])
@some.parametrize()
def test_each_role_finds_the_service_keeping_to_its_document(
    case: schemathesis.Case, served: Served, role: str
) -> None:
    call(case, served, role)


@pytest.mark.timeout(60)
@anonymous.parametrize()
def test_without_a_token_the_service_keeps_to_its_document(
    case: schemathesis.Case, served: Served
) -> None:
    call(case, served, None)


def call(case: schemathesis.Case, served: Served, role: str | None) -> None:
    """Send the case with the role's token and check the answer; a token without the
    operation's role must never get a 2xx."""
    headers = {"Authorization": f"Bearer {served.tokens[role]}"} if role else {}
    extra: dict[str, Any] = {}
    if case.operation.path == "/line/webhook" and role is not None:
        # the webhook takes no token: in the runs with one, the body is signed as LINE
        # signs it, so that its events get past the signature check to the handler
        extra["data"] = _as_sent(case)
        signature = hmac.new(LINE_SECRET.encode(), extra["data"], hashlib.sha256).digest()
        headers = {"X-Line-Signature": base64.b64encode(signature).decode()}
    response = case.call_and_validate(
        base_url=served.base, session=served.http, headers=headers, checks=CHECKS, **extra
    )
    needs = case.operation.definition.raw.get("x-role")
    if needs is not None and needs not in GRANTS.get(role or "", set()):
        assert not 200 <= response.status_code < 300, (
            f"{case.method} {case.formatted_path} answered {response.status_code}"
            f" to {role or 'no token'}, but needs {needs}"
        )


def _as_sent(case: schemathesis.Case) -> bytes:
    """The body as schemathesis would send it."""
    sent = case.as_transport_kwargs()
    if "json" in sent:
        return json.dumps(sent["json"]).encode()
    body = sent.get("data") or b""
    return body.encode() if isinstance(body, str) else bytes(body)
