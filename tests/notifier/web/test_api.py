"""The HTTP API: validation, authentication and roles, idempotency, listing, cancelling."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.runtime import Runtime
from notifier.web import make_app
from tests.conftest import Api, announcement, finished, make_settings, subscriber_counts

AREAS = ["nerima", "hikarigaoka", "shakujii", "oizumi", ""]  # "": chose the whole ward


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).astimezone().isoformat()


async def nothing_queued(runtime: Runtime) -> bool:
    k = runtime.keys
    return await runtime.redis.xlen(k.intake) == 0 and await runtime.redis.zcard(k.notices) == 0


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"title": ""}, "title", "at least 1"),
        ({"title": "   "}, "title", "at least 1"),
        ({"title": "あ" * 101}, "title", "at most 100"),
        ({"body": "x" * 5001}, "body", "at most 5000"),
        ({"topics": []}, "topics", "at least 1"),
        ({"topics": ["weather"]}, "topics", "unknown topic 'weather'"),
        ({"areas": ["shibuya"]}, "areas", "unknown area 'shibuya'"),
        ({"channels": ["fax"]}, "channels", "must be one of line, x, email, print"),
        ({"channels": []}, "channels", "at least 1"),
        ({"url": "http://www.city.nerima.tokyo.jp/"}, "url", "https://"),
        ({"url": "javascript:alert(1)"}, "url", "https://"),
        ({"publish_at": "2030-01-01T09:00:00"}, "publish_at", "timezone"),
        ({"publish_at": "2020-01-01T09:00:00+09:00"}, "publish_at", "in the past"),
        ({"publish_at": "2030-01-01"}, "publish_at", "RFC 3339"),
        ({"publish_at": 1900000000}, "publish_at", "RFC 3339"),
        ({"translations": {"fr": {"title": "a", "body": "b"}}}, "translations", "'fr'"),
        ({"translations": {"en": {"title": "a"}}}, "translations.en.body", "required"),
        ({"id": "mine"}, "id", "assigned by the service"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
async def test_each_bad_field_is_named_and_nothing_is_queued(
    api: Api,
    runtime: Runtime,
    tokens: dict[str, str],
    change: dict[str, Any],
    field: str,
    words: str,
) -> None:
    status, body = await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(**change)
    )
    assert status == 400, body
    assert body["error"]["code"] == "invalid"
    assert words in body["error"]["fields"][field]
    assert await nothing_queued(runtime)


async def test_missing_fields_are_all_reported_at_once(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    status, body = await api.call("POST", "/api/announcements", tokens["staff"], {})
    assert status == 400
    assert set(body["error"]["fields"]) == {"title", "body", "topics"}  # no areas: the ward
    assert await nothing_queued(runtime)


async def test_an_announcement_without_areas_is_for_the_whole_ward_as_with_none(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    store = runtime.subscribers
    residents = [
        {"channel": "email", "address": f"{area or 'ward'}@example.jp", "areas": area.split()}
        for area in AREAS
    ]
    await store.save([store.validate(r) for r in residents])
    without = announcement(channels=["email"])
    del without["areas"]
    views = []
    for body in (without, announcement(channels=["email"], areas=[])):
        status, answer = await api.call("POST", "/api/announcements", tokens["staff"], body)
        assert status == 202, answer
        views.append(await finished(runtime, answer["id"]))
    for view in views:
        assert view["notice"]["areas"] == []
        assert view["progress"]["email"]["sent"] == len(AREAS)  # every area, and the ward
    assert views[0]["progress"] == views[1]["progress"]


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(
    api: Api, runtime: Runtime, tokens: dict[str, str], payload: bytes
) -> None:
    status, body = await api.call(
        "POST",
        "/api/announcements",
        tokens["staff"],
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert body["error"]["code"] in ("bad_json", "invalid")
    assert await nothing_queued(runtime)


async def test_a_body_over_the_limit_is_413(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    huge = announcement(body="x" * 300_000)
    status, body = await api.call("POST", "/api/announcements", tokens["staff"], huge)
    assert status == 413
    assert body["error"]["code"] == "too_large"
    assert await nothing_queued(runtime)


async def test_valid_announcement_is_queued_with_its_id(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    status, body = await api.call("POST", "/api/announcements", tokens["staff"], announcement())
    assert status == 202
    assert body["status"] == "queued" and len(body["id"]) >= 8
    status, found = await api.call("GET", f"/api/announcements/{body['id']}", tokens["staff"])
    assert status == 200
    assert found["notice"]["title"] == "粗大ごみの収集日が変わります"
    assert found["notice"]["channels"] == ["line", "x", "email", "print"]


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, 401), ("Bearer", 401), ("Basic dXNlcjpwYXNz", 401), ("Bearer ntk_nope", 401)],
)
async def test_no_or_unknown_token_is_401(
    api: Api, runtime: Runtime, header: str | None, code: int
) -> None:
    headers = {"Authorization": header} if header else {}
    status, body = await api.call(
        "POST", "/api/announcements", json=announcement(), headers=headers
    )
    assert status == code
    assert body["error"]["code"] == "unauthenticated"
    assert await nothing_queued(runtime)


async def test_a_revoked_token_no_longer_works(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    assert await runtime.tokens.revoke("staff-tester")
    status, _ = await api.call("GET", "/api/announcements", tokens["staff"])
    assert status == 401


@pytest.mark.parametrize(
    ("method", "path", "role", "payload"),
    [
        ("POST", "/api/subscribers", "staff", {"channel": "email", "address": "a@example.jp"}),
        ("GET", "/api/subscribers/abc", "staff", None),
        ("DELETE", "/api/subscribers/abc", "emergency", None),
    ],
)
async def test_wrong_role_is_403(
    api: Api,
    runtime: Runtime,
    tokens: dict[str, str],
    method: str,
    path: str,
    role: str,
    payload: Any,
) -> None:
    status, body = await api.call(method, path, tokens[role], payload)
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert await subscriber_counts(runtime) == {"line": 0, "email": 0, "print": 0}


async def test_every_role_may_post_announcements(api: Api, tokens: dict[str, str]) -> None:
    for token in tokens.values():
        status, _ = await api.call("POST", "/api/announcements", token, announcement())
        assert status == 202


async def test_idempotency_key_returns_the_first_answer(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "form-1234"}
    first = await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(), headers=headers
    )
    again = await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(), headers=headers
    )
    assert first[0] == again[0] == 202
    assert first[1]["id"] == again[1]["id"]
    assert await runtime.redis.zcard(runtime.keys.notices) == 1

    other = await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(title="別の件"), headers=headers
    )
    assert other[0] == 422
    assert other[1]["error"]["code"] == "idempotency_conflict"
    assert await runtime.redis.zcard(runtime.keys.notices) == 1

    # the key belongs to its caller: another token's same key is a new request
    theirs = await api.call(
        "POST", "/api/announcements", tokens["admin"], announcement(), headers=headers
    )
    assert theirs[0] == 202 and theirs[1]["id"] != first[1]["id"]


async def test_list_filters_by_status(api: Api, tokens: dict[str, str]) -> None:
    _, now = await api.call("POST", "/api/announcements", tokens["staff"], announcement())
    _, soon = await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(publish_at=later(hours=2))
    )
    assert soon["status"] == "scheduled"
    status, body = await api.call("GET", "/api/announcements?status=scheduled", tokens["staff"])
    assert status == 200
    assert [a["id"] for a in body["announcements"]] == [soon["id"]]
    _, everything = await api.call("GET", "/api/announcements", tokens["staff"])
    assert {a["id"] for a in everything["announcements"]} == {now["id"], soon["id"]}
    status, body = await api.call("GET", "/api/announcements?status=lost", tokens["staff"])
    assert status == 400 and "status" in body["error"]["fields"]
    status, body = await api.call("GET", "/api/announcements?limit=0", tokens["staff"])
    assert status == 400 and "limit" in body["error"]["fields"]


async def test_unknown_announcement_is_404(api: Api, tokens: dict[str, str]) -> None:
    assert (await api.call("GET", "/api/announcements/nope", tokens["staff"]))[0] == 404
    assert (await api.call("DELETE", "/api/announcements/nope", tokens["staff"]))[0] == 404


async def test_subscribers_api(api: Api, runtime: Runtime, tokens: dict[str, str]) -> None:
    resident = {
        "channel": "print",
        "address": "練馬区豊玉北6-12-1",
        "name": "練馬花子",
        "areas": ["nerima"],
    }
    status, body = await api.call("POST", "/api/subscribers", tokens["staff"], resident)
    assert status == 201 and body["created"] is True
    subscriber_id = body["id"]
    status, again = await api.call(
        "POST", "/api/subscribers", tokens["staff"], {**resident, "areas": ["oizumi"]}
    )
    assert status == 200 and again["id"] == subscriber_id and again["created"] is False
    assert await subscriber_counts(runtime) == {"line": 0, "email": 0, "print": 1}

    status, shown = await api.call("GET", f"/api/subscribers/{subscriber_id}", tokens["admin"])
    assert status == 200 and shown["areas"] == ["oizumi"]
    assert "練馬区豊玉北" not in str(shown)  # the address is personal data: masked

    status, bad = await api.call(
        "POST", "/api/subscribers", tokens["admin"], {"channel": "email", "address": "no-at-sign"}
    )
    assert status == 400 and "address" in bad["error"]["fields"]
    assert "no-at-sign" not in str(bad)
    status, bad = await api.call(
        "POST", "/api/subscribers", tokens["admin"], {"channel": "line", "address": "U123"}
    )
    assert status == 400 and "address" in bad["error"]["fields"]
    status, bad = await api.call(
        "POST", "/api/subscribers", tokens["staff"], {"channel": "print", "address": "練馬区"}
    )
    assert status == 400 and "name" in bad["error"]["fields"]

    status, _ = await api.call("DELETE", f"/api/subscribers/{subscriber_id}", tokens["admin"])
    assert status == 200
    assert await subscriber_counts(runtime) == {"line": 0, "email": 0, "print": 0}
    status, _ = await api.call("GET", f"/api/subscribers/{subscriber_id}", tokens["admin"])
    assert status == 404


async def test_health_readiness_and_metrics(api: Api, tokens: dict[str, str]) -> None:
    assert await api.call("GET", "/healthz") == (200, {"status": "ok"})
    assert await api.call("GET", "/readyz") == (200, {"status": "ok", "redis": "up"})
    await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(publish_at=later(hours=1))
    )
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    assert 'notifier_notices{kind="announcement",status="scheduled"} 1.0' in text
    assert "notifier_stream_lag" in text and "notifier_send_seconds" in text
    assert 'notifier_http_requests_total{route="/api/announcements",status="202"} 1.0' in text


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    status, body = await api.call("GET", "/api/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_readyz_is_503_while_redis_does_not_answer(
    tmp_path: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("NOTIFIER_REDIS_URL", dead)  # the environment wins over arguments
    settings = make_settings(tmp_path, prefix, redis_url=dead)
    runtime = Runtime.open(settings)
    async with TestClient(TestServer(make_app(runtime))) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert await response.json() == {"status": "unavailable", "redis": "down"}
        response = await client.get("/healthz")
        assert response.status == 200
        response = await client.post(
            "/api/announcements", json=announcement(), headers={"Authorization": "Bearer ntk_x"}
        )
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "unavailable"
    await runtime.close()
