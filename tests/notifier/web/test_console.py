"""The staff console over HTTP: sign-in, sessions, CSRF, limits, headers, compose, preview,
the emergency page's confirmation, the subscribers page, and what the audit log keeps."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.when import local_time
from tests.conftest import make_settings, wait_for

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """A browser's worth of state (cookies) for the console, over plain HTTP."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.base + path, allow_redirects=False) as r:
            text = await r.text()
        found = CSRF.search(text)
        if found and path != "/console/signin":
            self.csrf = found.group(1)
        return r.status, text, r

    async def post(
        self, path: str, data: Any = None, csrf: str | None = None
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        form = aiohttp.FormData(data or {})
        form.add_field("csrf", self.csrf if csrf is None else csrf)
        async with self.session.post(self.base + path, data=form, allow_redirects=False) as r:
            return r.status, await r.text(), r

    async def sign_in(self, **credentials: str) -> aiohttp.ClientResponse:
        _, page, _ = await self.get("/console/signin")
        found = CSRF.search(page)
        assert found is not None
        _, _, response = await self.post("/console/signin", credentials, csrf=found.group(1))
        return response


@pytest.fixture
async def console(service: Service) -> AsyncIterator[Console]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Console(session, f"http://127.0.0.1:{service.port}")


@pytest.fixture
async def hanako(runtime: Runtime) -> str:
    await runtime.accounts.create("hanako", "staff", PASSWORD)
    return "hanako"


async def test_an_account_signs_in_with_a_cookie_that_scripts_cannot_read(
    console: Console, hanako: str, runtime: Runtime
) -> None:
    status, _, r = await console.get("/console/compose")
    assert status == 303 and r.headers["Location"] == "/console/signin?next=/console/compose"

    refused = await console.sign_in(name=hanako, password="wrong password!!")
    assert refused.status == 401
    assert "notifier_session" not in {c.key for c in console.session.cookie_jar}

    r = await console.sign_in(name=hanako, password=PASSWORD)
    assert r.status == 303 and r.headers["Location"] == "/console/notices"
    cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("notifier_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    status, page, _ = await console.get("/console/compose")
    assert status == 200 and "お知らせの作成" in page and "hanako" in page

    entries = await runtime.audit.recent()
    outcomes = [(e["action"], e["target"], e["outcome"]) for e in entries]
    assert ("console.signin", "account:hanako", "refused") in outcomes
    assert ("console.signin", "account:hanako", "ok") in outcomes
    assert PASSWORD not in json.dumps(entries) and "wrong password" not in json.dumps(entries)


async def test_a_token_signs_in_and_the_session_ends_when_the_token_is_revoked(
    console: Console, runtime: Runtime, tokens: dict[str, str]
) -> None:
    r = await console.sign_in(token=tokens["emergency"])
    assert r.status == 303
    status, page, _ = await console.get("/console/emergency")
    assert status == 200 and "緊急情報の発信" in page
    assert tokens["emergency"] not in json.dumps(await runtime.audit.recent())
    await runtime.tokens.revoke("emergency-tester")
    status, _, _ = await console.get("/console/emergency")
    assert status == 303


async def test_sessions_end_when_idle_when_old_at_sign_out_and_when_tampered(
    console: Console, hanako: str, runtime: Runtime, prefix: str
) -> None:
    def session_key() -> str:  # the cookie is the session's id and its signature
        cookie = next(c for c in console.session.cookie_jar if c.key == "notifier_session")
        return f"{prefix}session:{cookie.value.rpartition('.')[0]}"

    await console.sign_in(name=hanako, password=PASSWORD)
    key = session_key()
    assert 0 < await runtime.redis.ttl(key) <= 30 * 60
    await runtime.redis.pexpire(key, 1)  # idle past NOTIFIER_SESSION_IDLE_MINUTES
    time.sleep(0.01)
    assert (await console.get("/console/notices"))[0] == 303

    await console.sign_in(name=hanako, password=PASSWORD)
    key = session_key()
    record = json.loads(await runtime.redis.get(key))
    record["started"] -= 8 * 3600 + 1  # signed in longer ago than NOTIFIER_SESSION_HOURS
    await runtime.redis.set(key, json.dumps(record), keepttl=True)
    assert (await console.get("/console/notices"))[0] == 303
    assert not await runtime.redis.exists(key)

    await console.sign_in(name=hanako, password=PASSWORD)
    cookie = next(c for c in console.session.cookie_jar if c.key == "notifier_session")
    stolen = cookie.value
    assert (await console.get("/console/notices"))[0] == 200
    key = session_key()
    status, _, r = await console.post("/console/signout")
    assert status == 303 and r.headers["Location"] == "/console/signin"
    assert not await runtime.redis.exists(key)
    replay = {"notifier_session": stolen}
    async with console.session.get(
        console.base + "/console/notices", cookies=replay, allow_redirects=False
    ) as r:
        assert r.status == 303  # the cookie of a closed session opens nothing

    await console.sign_in(name=hanako, password=PASSWORD)
    cookie = next(c for c in console.session.cookie_jar if c.key == "notifier_session")
    session_id, _, signature = cookie.value.rpartition(".")
    other = "B" if session_id.endswith("A") else "A"  # one character changed, surely
    forged = {"notifier_session": session_id[:-1] + other + "." + signature}
    async with console.session.get(
        console.base + "/console/notices", cookies=forged, allow_redirects=False
    ) as r:
        assert r.status == 303


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    console: Console, hanako: str, runtime: Runtime
) -> None:
    await console.sign_in(name=hanako, password=PASSWORD)
    await console.get("/console/compose")
    form = {"title": "題", "body": "本文", "topics": "garbage"}
    for csrf in ("", "not-the-token"):
        status, page, _ = await console.post("/console/compose", form, csrf=csrf)
        assert status == 403 and "有効期限" in page
    assert await runtime.notices.list() == []
    # the sign-in form has its own token, bound to a cookie
    async with console.session.post(
        console.base + "/console/signin", data={"name": hanako, "password": PASSWORD}
    ) as r:
        assert r.status == 403


async def test_sign_in_goes_back_only_to_a_console_page(console: Console, hanako: str) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console/../api"):
        _, page, _ = await console.get(f"/console/signin?next={target}")
        csrf = CSRF.search(page)
        assert csrf is not None
        credentials = {"name": hanako, "password": PASSWORD}
        _, _, r = await console.post(
            f"/console/signin?next={target}", credentials, csrf=csrf.group(1)
        )
        location = r.headers["Location"]
        assert location.startswith("/console/") and "evil" not in location


@pytest.fixture
async def limited(tmp_path: Path, prefix: str) -> AsyncIterator[tuple[Settings, str]]:
    settings = make_settings(tmp_path, prefix, api_rate_per_token=3, signin_rate_per_ip=2)
    service = Service(settings, grace=5.0)
    await service.start()
    yield settings, f"http://127.0.0.1:{service.port}"
    await service.stop()


async def test_too_many_requests_get_429_with_retry_after(
    limited: tuple[Settings, str], tokens: dict[str, str]
) -> None:
    _, base = limited
    headers = {"Authorization": f"Bearer {tokens['staff']}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        statuses = []
        for _ in range(4):
            async with http.get(base + "/api/announcements", headers=headers) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
                body = await r.json()
        assert statuses == [200, 200, 200, 429]
        assert body["error"]["code"] == "too_many_requests"
        assert retry_after is not None and 0 < int(retry_after) <= 60
        other = {"Authorization": f"Bearer {tokens['admin']}"}  # the limit is per token
        async with http.get(base + "/api/announcements", headers=other) as r:
            assert r.status == 200

        console = Console(http, base)
        attempts = [(await console.sign_in(token="ntk_wrong")).status for _ in range(3)]
        assert attempts == [401, 401, 429]
        right = await console.sign_in(token=tokens["staff"])
        assert right.status == 429  # the address is locked out for the window, right or wrong


async def test_every_response_carries_the_security_headers(console: Console, hanako: str) -> None:
    await console.sign_in(name=hanako, password=PASSWORD)
    for path in (
        "/console/notices",
        "/console/signin",
        "/healthz",
        "/api/announcements",
        "/subscribe",
        "/nowhere",
        "/console/static/console.js",
    ):
        async with console.session.get(console.base + path, allow_redirects=False) as r:
            csp = r.headers.get("Content-Security-Policy", "")
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "script-src 'self'" in csp and "unsafe-eval" not in csp
            assert r.headers.get("X-Frame-Options") == "DENY", path
            assert r.headers.get("Referrer-Policy") == "no-referrer", path
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path
    async with console.session.get(console.base + "/console/notices") as r:
        assert r.headers.get("Cache-Control") == "no-store"


async def test_a_body_over_the_limit_gets_413_and_changes_nothing(
    console: Console, hanako: str, runtime: Runtime, tokens: dict[str, str]
) -> None:
    huge = "あ" * (runtime.settings.max_body_bytes // 3 + 10)
    headers = {"Authorization": f"Bearer {tokens['staff']}"}
    payload = {"title": "t", "body": huge, "topics": ["garbage"], "areas": []}
    async with console.session.post(
        console.base + "/api/announcements", json=payload, headers=headers
    ) as r:
        assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"
    await console.sign_in(name=hanako, password=PASSWORD)
    await console.get("/console/compose")
    status, _, _ = await console.post("/console/compose", {"title": "t", "body": huge})
    assert status == 413
    assert await runtime.notices.list() == []


async def test_compose_checks_in_japanese_then_queues_with_translations_and_a_schedule(
    console: Console, hanako: str, runtime: Runtime
) -> None:
    await console.sign_in(name=hanako, password=PASSWORD)
    await console.get("/console/compose")
    status, page, _ = await console.post(
        "/console/compose", {"title": "", "body": "本文", "url": "ftp://x"}
    )
    assert status == 400
    assert "件名は改行や特殊な文字を含めず、1〜100文字で入力してください。" in page
    assert "分野を一つ以上選んでください。" in page and "https://" in page
    assert 'value="ftp://x"' in page  # what staff typed stays
    day = (datetime.now(runtime.settings.tz) + timedelta(days=30)).date().isoformat()
    form = [
        ("title", "図書館の休館日"),
        ("body", "12月1日は休館します。\r\n\r\nご不便をおかけします。"),
        ("topics", "events"),
        ("areas", "oizumi"),
        ("channels", "line"),
        ("channels", "email"),
        ("publish_at", f"{day}T09:00"),
        ("title_easy", "としょかんが やすみです"),
        ("body_easy", "12がつ1にちは としょかんが やすみです。"),
    ]
    status, _, r = await console.post("/console/compose", form)
    assert status == 303 and r.headers["Location"] == "/console/notices?done=scheduled"
    (stored,) = await runtime.notices.list()
    notice = stored["notice"]
    assert stored["status"] == "scheduled" and notice["channels"] == ["line", "email"]
    assert notice["body"] == "12月1日は休館します。\n\nご不便をおかけします。"
    assert notice["publish_at"] == f"{day}T09:00:00+09:00"  # the ward's time
    assert notice["translations"]["easy"]["title"] == "としょかんが やすみです"
    (entry, *_) = await runtime.audit.recent()
    assert (entry["who"], entry["action"], entry["target"]) == (
        "account:hanako",
        "announcement.create",
        stored["id"],
    )
    status, page, _ = await console.get("/console/notices")
    assert "図書館の休館日" in page and "予約を取り消す" in page
    status, _, _ = await console.post(f"/console/notices/{stored['id']}/cancel")
    assert status == 303
    assert (await runtime.notices.get(stored["id"]))["status"] == "cancelled"  # type: ignore[index]


async def test_preview_shows_every_channel_or_the_fields_to_fix(
    console: Console, hanako: str
) -> None:
    await console.sign_in(name=hanako, password=PASSWORD)
    await console.get("/console/compose")
    status, text, _ = await console.post("/console/preview", {"title": "題", "body": ""})
    answer = json.loads(text)
    assert status == 200 and answer["html"] == ""
    assert answer["errors"]["body"] == (
        "本文は特殊な文字（制御文字や文字の向きを変える記号など）を含めず、"
        "1〜5,000文字で入力してください。"
    )
    form = {
        "title": "粗大ごみの<収集日>",
        "body": "収集日が変わります。" * 30,
        "topics": "garbage",
        "url": "https://www.city.nerima.tokyo.jp/gomi",
    }
    _, text, _ = await console.post("/console/preview", form)
    answer = json.loads(text)
    html = answer["html"]
    assert answer["errors"] == {}
    for part in ("preview-line", "preview-x", "preview-email", "preview-print"):
        assert f'id="{part}"' in html
    assert "粗大ごみの&lt;収集日&gt;" in html and "<収集日>" not in html  # escaped
    assert "詳しく見る" in html  # the LINE bubble's link button
    weights = [int(w) for w in re.findall(r"(\d+) / 280", html)]
    assert weights and all(w <= 280 for w in weights)
    assert "【練馬区】" in html or "練馬区" in html
    assert "くわしくは：https://www.city.nerima.tokyo.jp/gomi" in html  # the print entry


async def test_the_emergency_desk_confirms_with_the_audience_then_issues(
    console: Console, runtime: Runtime, tokens: dict[str, str]
) -> None:
    store = runtime.subscribers
    people = [
        {"channel": "line", "address": "U" + "1" * 32, "areas": ["nerima"]},
        {"channel": "line", "address": "U" + "2" * 32, "areas": []},
        {"channel": "line", "address": "U" + "3" * 32, "areas": ["oizumi"]},
        {"channel": "email", "address": "a@example.jp", "areas": ["nerima"]},
    ]
    await store.save([store.validate(p) for p in people])
    await console.sign_in(token=tokens["emergency"])
    await console.get("/console/emergency")
    form = [
        ("title", "避難指示"),
        ("body", "直ちに避難してください。"),
        ("severity", "emergency"),
        ("areas", "nerima"),
    ]
    status, page, _ = await console.post("/console/emergency/confirm", form)
    assert status == 200 and "この内容で発信しますか" in page
    sizes = dict(re.findall(r'data-channel="(\w+)"><th scope="row">[^<]+</th><td>([^<]+)<', page))
    assert sizes["line"] == "2人" and sizes["email"] == "1人"  # Nerima + the whole ward
    assert sizes["x"].startswith("公開") and sizes["print"] == "掲示用チラシ 1地域"
    assert await runtime.notices.list() == []  # nothing is sent before the second step
    _, page, _ = await console.post("/console/emergency/confirm", [*form, ("drill", "on")])
    drill = dict(re.findall(r'data-channel="(\w+)"><th scope="row">[^<]+</th><td>([^<]+)<', page))
    assert "x" not in drill and drill["line"] == "訓練の送り先 0人"  # never on X
    assert drill["print"] == "掲示用チラシ 1地域"  # flyers are made for drills too
    status, _, r = await console.post("/console/emergency/issue", form)
    assert status == 303 and r.headers["Location"] == "/console/emergency?done=queued"
    (alert,) = await runtime.notices.list()
    assert alert["kind"] == "alert" and alert["requested_by"] == "emergency-tester"
    _, page, _ = await console.get("/console/emergency")
    assert f'id="alert-{alert["id"]}"' in page and "解除を発信" in page
    status, _, _ = await console.post(f"/console/alerts/{alert['id']}/cancel")
    assert status == 303
    assert (await runtime.notices.get(alert["id"]))["state"] == "cancelled"  # type: ignore[index]
    actions = [e["action"] for e in await runtime.audit.recent()]
    assert actions[:2] == ["alert.cancel", "alert.issue"]


LABEL = re.compile(
    r'<label for="[^"]+">([^<（]+)[^<]*</label>\s*<(?:input|textarea)[^>]* name="(\w+)"'
)
LEGEND = re.compile(r'<fieldset aria-describedby="error-(\w+)">\s*<legend>([^<]+)</legend>')
ERROR = re.compile(r'<p class="error" id="error-([\w.]+)"[^>]*>([^<]+)</p>')


async def refused_as_labelled(
    console: Console, form: str, action: str, data: dict[str, str]
) -> dict[str, str]:
    """The errors of the form at ``form`` sent to ``action`` with ``data`` (a 400), each
    checked to name its field as the form's label does."""
    await console.get(form)
    status, page, _ = await console.post(action, data)
    assert status == 400
    names = {field: label for label, field in LABEL.findall(page)}
    names.update(LEGEND.findall(page))
    errors = dict(ERROR.findall(page))
    for field, message in errors.items():
        assert message.startswith((names[field], f"「{names[field]}」")), (field, message)
    return errors


async def test_each_forms_errors_name_its_fields_as_its_labels_do(
    console: Console, tokens: dict[str, str]
) -> None:
    await console.sign_in(token=tokens["emergency"])
    compose = {"title": "", "body": "", "url": "ftp://x", "publish_at": "2020-01-01T09:00"}
    errors = await refused_as_labelled(console, "/console/compose", "/console/compose", compose)
    assert set(errors) == {"title", "body", "topics", "url", "publish_at"}
    assert errors["title"].startswith("件名は") and errors["body"].startswith("本文は")
    desk = {"title": "", "body": "", "url": "ftp://x", "areas": "shibuya"}
    errors = await refused_as_labelled(
        console, "/console/emergency", "/console/emergency/confirm", desk
    )
    assert set(errors) == {"title", "body", "severity", "url", "areas"}
    assert errors["title"].startswith("見出しは")
    assert errors["body"].startswith("「何が起きたか・何をすべきか・どこへ行くか」は")
    assert not any(("件名" in m or "本文" in m) for m in errors.values())


async def test_areas_left_unchosen_are_the_whole_ward_as_in_the_api(
    console: Console, runtime: Runtime, tokens: dict[str, str]
) -> None:
    store = runtime.subscribers
    people = [
        {"channel": "line", "address": "U" + digit * 32, "areas": areas}
        for digit, areas in (("1", ["nerima"]), ("2", []), ("3", ["oizumi"]))
    ]
    await store.save([store.validate(p) for p in people])
    await console.sign_in(token=tokens["emergency"])
    for path in ("/console/compose", "/console/emergency"):
        _, page, _ = await console.get(path)
        assert "選ばなければ区内全域に届きます。" in page
    form = {"title": "避難指示", "body": "直ちに避難してください。", "severity": "emergency"}
    status, page, _ = await console.post("/console/emergency/confirm", form)
    assert status == 200 and "地域：区内全域" in page
    sizes = dict(re.findall(r'data-channel="(\w+)"><th scope="row">[^<]+</th><td>([^<]+)<', page))
    assert sizes["line"] == "3人" and sizes["print"] == "掲示用チラシ 4地域"  # everyone
    status, _, _ = await console.post("/console/emergency/issue", form)
    assert status == 303
    (alert,) = await runtime.notices.list()
    assert alert["notice"]["areas"] == []  # as the API stores an alert without areas


async def test_the_subscribers_page_counts_and_registers_without_listing_anyone(
    console: Console, runtime: Runtime, tokens: dict[str, str]
) -> None:
    store = runtime.subscribers
    await store.save(
        [store.validate({"channel": "email", "address": "taro@example.jp", "language": "en"})]
    )
    await console.sign_in(token=tokens["admin"])
    status, page, _ = await console.get("/console/subscribers")
    assert status == 200 and "taro@example.jp" not in page
    assert re.search(r'id="counts-channel".*?data-code="email">1<', page, re.S)
    assert re.search(r'id="counts-language".*?data-code="en">1<', page, re.S)
    resident = {
        "name": "練馬 花子",
        "address": "〒176-8501\r\n東京都練馬区豊玉北6-12-1",
        "areas": "nerima",
    }
    status, _, r = await console.post("/console/subscribers/print", resident)
    assert status == 303 and r.headers["Location"] == "/console/subscribers?done=created"
    _, page, _ = await console.get("/console/subscribers?done=created")
    assert "練馬 花子" not in page and "豊玉北" not in page and "登録しました" in page
    assert re.search(r'id="counts-channel".*?data-code="print">1<', page, re.S)
    (entry, *_) = await runtime.audit.recent()
    assert entry["action"] == "subscriber.create" and "花子" not in json.dumps(entry)
    status, page, _ = await console.get("/console/audit")
    assert status == 200 and "subscriber.create" in page and "花子" not in page


@pytest.fixture
async def at_night(tmp_path: Path, prefix: str) -> AsyncIterator[tuple[Settings, str]]:
    """Quiet hours from an hour ago to two hours from now: routine LINE pushes wait."""
    now = datetime.now(make_settings(tmp_path, prefix).tz)
    hours = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    settings = make_settings(tmp_path, prefix, quiet_hours=hours)
    service = Service(settings, grace=5.0)
    await service.start()
    yield settings, f"http://127.0.0.1:{service.port}"
    await service.stop()


async def test_the_list_says_why_a_channel_waits(
    at_night: tuple[Settings, str], runtime: Runtime, tokens: dict[str, str]
) -> None:
    settings, base = at_night
    store = runtime.subscribers
    await store.save([store.validate({"channel": "line", "address": "U" + "9" * 32})])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        console = Console(http, base)
        await console.sign_in(token=tokens["staff"])
        await console.get("/console/compose")
        form = {
            "title": "夜の投稿",
            "body": "朝に届きます。",
            "topics": "garbage",
            "channels": "line",
        }
        assert (await console.post("/console/compose", form))[0] == 303

        async def line_waits() -> Any:
            _, text, _ = await console.get("/console/notices/progress")
            (notice,) = json.loads(text)["notices"]
            return notice["progress"]["line"].get("waits")

        end = (datetime.now(settings.tz) + timedelta(hours=2)).replace(second=0, microsecond=0)
        until = local_time(end, settings.tz)  # 12月3日（木）午前1時30分: the ward's words
        assert await wait_for(line_waits) == f"夜間のため{until}まで保留"
        _, page, _ = await console.get("/console/notices")
        assert f"夜間のため{until}まで保留" in page
        await runtime.redis.set(runtime.keys.paused("line"), "monthly limit")
        assert await line_waits() == "一時停止中"


async def test_the_desk_issues_a_level_and_approves_or_dismisses_the_jmas_drafts(
    console: Console, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    from notifier.jma import parse
    from tests.notifier.test_jma_drafts import SPECS

    await console.sign_in(token=tokens["emergency"])
    _, page, _ = await console.get("/console/emergency")
    assert "警戒レベル4</span> 避難指示" in page and "崖崩れ、土石流及び地滑り" in page
    form = [("title", "高齢者等避難"), ("body", "お年寄りは避難してください。"), ("level", "3")]
    form += [("severity", "advisory"), ("hazard", "flood")]  # the level decides the severity
    status, page, _ = await console.post("/console/emergency/confirm", form)
    assert status == 200 and "警戒レベル3 高齢者等避難" in page and "災害の種類：洪水" in page
    status, _, _ = await console.post("/console/emergency/issue", form)
    assert status == 303
    (issued,) = await runtime.notices.list()
    assert (issued["notice"]["level"], issued["notice"]["severity"]) == (3, "warning")
    assert issued["notice"]["hazard"] == "flood"

    local = settings.model_copy(update={"jma_areas": ["0121400"]})
    store = runtime.drafts.drafts
    store.settings = local
    raw = (SPECS / "15_16_01_241031_VPWW56.xml").read_bytes()
    draft = await store.take(parse(raw), "https://www.data.jma.go.jp/x/VPWW56.xml")
    assert draft is not None
    _, page, _ = await console.get("/console/emergency")
    assert (
        f'id="draft-{draft.id}"' in page
        and 'href="https://www.data.jma.go.jp/x/VPWW56.xml"' in page
    )
    assert "警戒レベル4 避難指示" in page
    status, _, r = await console.post(f"/console/drafts/{draft.id}/dismiss")
    assert status == 303 and r.headers["Location"] == "/console/emergency?done=dismissed"
    assert (await store.get(draft.id)).state == "dismissed"  # type: ignore[union-attr]
    _, page, _ = await console.get("/console/emergency?done=dismissed")
    assert f'id="draft-{draft.id}"' not in page and "下書きを見送りました" in page
    status, page, _ = await console.post(f"/console/drafts/{draft.id}/approve")
    assert status == 409 and len(await runtime.notices.list()) == 1  # dismissed: never sent
    actions = [e["action"] for e in await runtime.audit.recent()]
    assert actions[:2] == ["draft.approve", "draft.dismiss"]
