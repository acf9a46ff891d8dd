"""Input a hostile or careless client sends: answered with a clean 4xx that names the
problem, never a 5xx, and nothing changes. One test a class of input."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from notifier import cap as cap_module
from notifier.config import Settings
from notifier.json_input import MAX_DEPTH, JsonError, loads
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import Api, announcement
from tests.notifier.test_cap import cap
from tests.notifier.web.test_alerts import alert

DEEP = ("[" * 5000 + "]" * 5000).encode()
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "[]" + "}" * (depth - 1)


def test_json_nesting_is_bounded_without_recursion() -> None:
    assert loads(nested(MAX_DEPTH)) is not None
    for raw in (nested(MAX_DEPTH + 1), "[" * 100_000 + "]" * 100_000):
        with pytest.raises(JsonError, match=f"nests deeper than {MAX_DEPTH} levels"):
            loads(raw)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{", "is not JSON"),
        (b'{"a": NaN}', "NaN"),
        (b"[-Infinity]", "Infinity"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"9" * 5000, "number too long"),
    ],
)
def test_what_is_not_strict_json_is_refused_with_a_reason(raw: bytes, why: str) -> None:
    with pytest.raises(JsonError, match=why):
        loads(raw)


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/api/announcements", "staff"),
        ("/api/alerts", "emergency"),
        ("/api/subscribers", "admin"),
        ("/api/alerts/0123456789abcdef/cancel", "emergency"),
    ],
)
async def test_deeply_nested_json_is_a_400_and_changes_nothing(
    api: Api, runtime: Runtime, tokens: dict[str, str], path: str, role: str
) -> None:
    headers = {"Content-Type": "application/json"}
    status, body = await api.call("POST", path, tokens[role], data=DEEP, headers=headers)
    assert status == 400, body
    assert body["error"]["code"] == "bad_json"
    assert "nests deeper than" in body["error"]["message"]
    assert await runtime.redis.zcard(runtime.keys.notices) == 0
    assert await runtime.redis.xlen(runtime.keys.intake) == 0


@pytest.mark.parametrize("raw", [b"{", DEEP, b'{"channel": "print"}'])
async def test_a_subscriber_post_checks_the_token_before_it_reads_the_body(
    api: Api, raw: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    status, body = await api.call("POST", "/api/subscribers", data=raw, headers=headers)
    assert status == 401, body
    status, body = await api.call("POST", "/api/subscribers", "nobody", data=raw, headers=headers)
    assert status == 401, body


async def test_staff_register_print_residents_only_and_a_refusal_is_audited(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    resident = {"channel": "email", "address": "hanako@example.jp", "areas": []}
    status, body = await api.call("POST", "/api/subscribers", tokens["staff"], json=resident)
    assert status == 403, body
    assert await runtime.subscribers.find("email", "hanako@example.jp") is None
    postal = {"channel": "print", "address": "〒176-8501 練馬区豊玉北6-12-1", "name": "練馬花子"}
    status, body = await api.call("POST", "/api/subscribers", tokens["staff"], json=postal)
    assert status == 201, body
    (refusal,) = [e for e in await runtime.audit.recent() if e["outcome"] == "forbidden"]
    assert refusal["who"] == "staff-tester" and refusal["action"] == "subscriber.save"
    assert refusal["needs"] == "admin"
    assert "hanako" not in str(refusal)


@pytest.mark.parametrize(
    ("method", "path", "action", "target"),
    [
        ("POST", "/api/alerts", "alert.issue", "-"),
        ("POST", "/api/alerts/0123456789abcdef/approve", "alert.approve", "0123456789abcdef"),
        ("POST", "/api/alerts/0123456789abcdef/cancel", "alert.cancel", "0123456789abcdef"),
        ("GET", "/api/audit", "audit.read", "-"),
        ("DELETE", "/api/subscribers/s1", "subscriber.delete", "s1"),
    ],
)
async def test_a_token_refused_for_its_role_is_recorded_in_the_audit_log(
    api: Api,
    runtime: Runtime,
    tokens: dict[str, str],
    method: str,
    path: str,
    action: str,
    target: str,
) -> None:
    status, body = await api.call(method, path, tokens["staff"], json=alert())
    assert status == 403, body
    (entry,) = await runtime.audit.recent()
    assert (entry["who"], entry["role"], entry["action"]) == ("staff-tester", "staff", action)
    assert entry["outcome"] == "forbidden" and entry["from"] == "127.0.0.1"
    assert entry["target"] == target
    assert "石神井川" not in str(entry)  # never the body


@pytest.mark.parametrize("depth", [300, 40])
async def test_cap_nested_too_deep_is_a_400_naming_the_alert_and_is_audited(
    api: Api, runtime: Runtime, tokens: dict[str, str], depth: int
) -> None:
    inner = "<parameter>" * depth + "</parameter>" * depth
    document = cap(extra_info=inner)
    headers = {"Content-Type": "application/cap+xml"}
    status, body = await api.call(
        "POST", "/api/alerts", tokens["emergency"], data=document, headers=headers
    )
    assert status == 400, body
    assert body["error"]["code"] == "invalid_cap"
    assert "nest deeper than" in body["error"]["fields"]["alert"]
    (entry,) = await runtime.audit.recent()
    assert (entry["action"], entry["outcome"]) == ("alert.issue", "invalid_cap")
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


def test_a_document_libxml2_refuses_after_the_gate_took_it_is_a_cap_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cap_module, "MAX_DEPTH", 1000)  # let libxml2's own limit (256) speak
    document = cap(extra_info="<parameter>" * 300 + "</parameter>" * 300)
    with pytest.raises(cap_module.CapError) as refused:
        cap_module.parse(document, settings.ward, settings.cap_max_bytes)
    assert refused.value.element == "alert"
    assert "not accepted as XML" in refused.value.message


@pytest.fixture
async def signed_in(service: Service, runtime: Runtime) -> Any:
    await runtime.accounts.create("hanako", "staff", "correct horse battery staple")
    base = f"http://127.0.0.1:{service.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(base + "/console/signin") as r:
            csrf = CSRF.search(await r.text())
        assert csrf is not None
        form = {"name": "hanako", "password": "correct horse battery staple", "csrf": csrf[1]}
        async with session.post(base + "/console/signin", data=form, allow_redirects=False) as r:
            assert r.status == 303
        yield session, base


@pytest.mark.parametrize("value", ["é", "\u202e", "x" * 10_000, "\ud800"])
async def test_an_odd_csrf_value_is_a_403_on_sign_in_and_on_every_console_post(
    signed_in: Any, runtime: Runtime, value: str
) -> None:
    session, base = signed_in
    data = "csrf=" + quote(value.encode("utf-8", "surrogatepass")) + "&title=a&body=b"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in ("/console/compose", "/console/signout", "/console/signin"):
        async with session.post(base + path, data=data, headers=form) as r:
            assert r.status == 403, (path, await r.text())
    assert await runtime.redis.zcard(runtime.keys.notices) == 0
    refusals = [e for e in await runtime.audit.recent() if e["outcome"] == "bad_csrf"]
    assert {e["target"] for e in refusals} == {"/console/compose", "/console/signout"}
    assert {e["who"] for e in refusals} == {"account:hanako"}


async def test_a_console_page_refused_for_the_role_is_audited(
    signed_in: Any, runtime: Runtime
) -> None:
    session, base = signed_in
    async with session.get(base + "/console/audit") as r:
        assert r.status == 403
    (entry,) = [e for e in await runtime.audit.recent() if e["outcome"] == "forbidden"]
    assert (entry["action"], entry["target"], entry["needs"]) == (
        "console.refused",
        "/console/audit",
        "admin",
    )


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
async def test_a_broken_form_is_a_4xx_on_every_console_post(
    signed_in: Any, runtime: Runtime, content_type: str
) -> None:
    session, base = signed_in
    for path in ("/console/compose", "/console/preview", "/console/signin"):
        headers = {"Content-Type": content_type}
        async with session.post(base + path, data=b"--x\r\n\xff=\xfe", headers=headers) as r:
            assert 400 <= r.status < 500, (path, content_type, await r.text())
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


async def raw_request(service: Service, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Bytes no HTTP client library would send (header values that are not UTF-8)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    length = f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    writer.write(head + length + body)
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def test_header_values_outside_printable_ascii_are_refused_not_a_fault(
    service: Service, runtime: Runtime, tokens: dict[str, str]
) -> None:
    head = b"GET /api/announcements HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
    status, body = await raw_request(service, head)
    assert status == 401, body
    notice = json.dumps(announcement()).encode()
    for key in (b"\xff", "鍵".encode()):
        head = (
            b"POST /api/announcements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {tokens['staff']}\r\n".encode()
            + b"Idempotency-Key: "
            + key
            + b"\r\n"
        )
        status, body = await raw_request(service, head, notice)
        assert status == 400 and b"bad_idempotency_key" in body, body
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"--x\r\n\xff=\xfe",
        b'--x\r\nContent-Disposition: form-data; name="address"\r\n'
        b"Content-Type: text/plain; charset=bogus\r\n\r\nhanako@example.jp\r\n--x--\r\n",
    ],
)
async def test_a_broken_form_on_the_public_subscription_page_is_a_400(
    api: Api, runtime: Runtime, body: bytes
) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    status, _ = await api.call("POST", "/subscribe", data=body, headers=headers)
    assert status == 400
    assert not [k async for k in runtime.redis.scan_iter(match=runtime.keys.confirmation("*"))]


async def test_an_alert_is_never_cancelled_as_an_announcement(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    """Only the desk calls an alert off (with an all-clear): staff can't cancel one, even
    while it is still queued."""
    status, body = await api.call("POST", "/api/alerts", tokens["emergency"], json=alert())
    assert status == 202
    await runtime.redis.hset(runtime.keys.notice(body["id"]), "status", "queued")  # not yet out
    for token in (tokens["staff"], tokens["admin"]):
        status, refused = await api.call("DELETE", f"/api/announcements/{body['id']}", token)
        assert status == 404, refused
    found = await runtime.notices.get(body["id"])
    assert found is not None and found["status"] != "cancelled"


@pytest.mark.parametrize("before", ["18446744073709551616-0", "1-18446744073709551616"])
async def test_an_audit_position_past_a_stream_id_is_a_400(
    api: Api, tokens: dict[str, str], before: str
) -> None:
    status, body = await api.call("GET", f"/api/audit?before={before}", tokens["admin"])
    assert status == 400, body
    assert body["error"]["fields"] == {"before": "an entry id such as 1-0"}
    assert (await api.call("GET", "/api/audit?before=18446744073709551615-0", tokens["admin"]))[
        0
    ] == 200
