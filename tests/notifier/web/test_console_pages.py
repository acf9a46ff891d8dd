"""Every console page renders for every kind and state of notice: announcements scheduled,
queued, dispatching, done, failed and cancelled; alerts waiting for approval, active,
updated, called off, withdrawn, drills and one from a CAP document. The notices are made
once for the module, through the real service (every channel in outbox mode, a second
person's approval on, quiet hours now); each page is then asked about each of them."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis
from markupsafe import escape

from notifier import intake
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.when import local_time
from tests.conftest import REDIS_URL, Api, announcement, finished, make_settings
from tests.notifier.test_cap import cap
from tests.notifier.web.test_console import Console

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

STATUS_NAMES = {
    "scheduled": "予約",
    "queued": "受付",
    "dispatching": "配信中",
    "done": "完了",
    "failed": "失敗",
    "cancelled": "取消",
    "pending_approval": "承認待ち",
}
STATE_WORDS = {  # a pending alert's status already says 承認待ち
    "active": "発令中",
    "superseded": "更新済み",
    "cancelled": "解除済み",
    "withdrawn": "取り下げ",
}
ALERT_CHANNELS = ["line", "x", "email"]  # no flyers: their PDFs would cost seconds each


# each state: the notice's status, its state as an alert, the marks before its title
STATES: dict[str, tuple[str, str | None, list[str]]] = {
    "scheduled": ("scheduled", None, []),
    "queued": ("queued", None, []),
    "dispatching": ("dispatching", None, []),
    "done": ("done", None, []),
    "failed": ("failed", None, []),
    "cancelled": ("cancelled", None, []),
    "pending": ("pending_approval", "pending", ["注意"]),
    "active": ("done", "active", ["緊急"]),
    "update": ("done", "active", ["緊急", "更新"]),
    "superseded": ("done", "superseded", ["緊急"]),
    "update_pending": ("pending_approval", "pending", ["警戒", "更新"]),
    "all_clear": ("done", "all-clear", ["解除"]),
    "called_off": ("done", "cancelled", ["緊急"]),
    "all_clear_pending": ("pending_approval", "pending", ["解除"]),
    "withdrawn": ("cancelled", "withdrawn", ["緊急"]),
    "drill": ("done", "active", ["訓練", "緊急"]),
    "cap": ("done", "active", ["緊急"]),
}
WRITTEN = ("queued", "dispatching", "failed")  # into Redis by the test, not through the API


@dataclass
class Case:
    """One notice in one state, and what the pages should say about it."""

    id: str
    title: str
    kind: str
    status: str
    state: str | None
    tags: list[str]
    drill: bool
    areas: list[str]
    audited: bool

    @property
    def on_desk(self) -> bool:
        return self.state in ("active", "pending")


@dataclass
class World:
    settings: Settings
    runtime: Runtime
    base: str
    tokens: dict[str, str]
    staff: Console
    desk: Console
    admin: Console
    cases: dict[str, Case]
    publish_local: str  # the scheduled notices' time, as staff read it


def title(label: str) -> str:
    """A title that proves escaping: markup, an ampersand and both quotes."""
    return f"{label}<b>確認</b> & \"引用\" 'ひと言'"


def alert(name: str, severity: str = "emergency", **fields: Any) -> dict[str, Any]:
    return {
        "title": title(name),
        "body": "石神井川が氾濫するおそれがあります。\n\n直ちに避難してください。",
        "severity": severity,
        "areas": ["nerima"],
        "channels": ALERT_CHANNELS,
        **fields,
    }


def cap_alert() -> bytes:
    info = """<info>
    <language>ja-JP</language><category>Met</category><event>大雨特別警報</event>
    <urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>
    <headline>CAP&lt;b&gt;大雨&lt;/b&gt; &amp; "特別" 'JMA'</headline>
    <description>数十年に一度の大雨となっています。</description>
    <area><areaDesc>光が丘地域</areaDesc></area>
  </info>"""
    return cap(identifier=f"JMA-{uuid.uuid4().hex[:8]}", info=info)


async def _write_record(
    runtime: Runtime, settings: Settings, name: str, status: str, **extra: str
) -> str:
    """An announcement as the store's accept script writes it (the record and the index),
    without the intake entry the running dispatcher would take at once: states that last
    too short a moment to catch (queued, dispatching) or that need a fault (failed)."""
    notice = intake.validate(announcement(title=title(name)), settings)
    assert notice.id is not None
    now = time.time()
    await runtime.redis.hset(
        runtime.keys.notice(notice.id),
        mapping={
            "notice": notice.model_dump_json(),
            "kind": "announcement",
            "status": status,
            "created": now,
            "updated": now,
            **extra,
        },
    )
    await runtime.redis.zadd(runtime.keys.notices, {notice.id: now})
    return notice.id


async def _console(session: aiohttp.ClientSession, base: str, token: str) -> Console:
    console = Console(session, base)
    response = await console.sign_in(token=token)
    assert response.status == 303
    return console


async def _build(world: World, api: Api, desk: str, second: str) -> None:
    """Every state, through the service where it can be reached."""
    rt, settings, staff = world.runtime, world.settings, world.tokens["staff"]
    ids: dict[str, str] = {}

    async def post(path: str, token: str, body: Any = None, **kw: Any) -> str:
        status, answer = await api.call("POST", path, token, json=body, **kw)
        assert status in (200, 202), (path, answer)
        found: str = answer["id"]
        return found

    async def issue(name: str, query: str = "", **fields: Any) -> str:
        ids[name] = await post(f"/api/alerts{query}", desk, alert(name, **fields))
        return ids[name]

    async def approve(alert_id: str) -> None:
        await post(f"/api/alerts/{alert_id}/approve", second)

    async def call_off(name: str, alert_id: str) -> str:
        ids[name] = await post(f"/api/alerts/{alert_id}/cancel", desk, {"title": title(name)})
        return ids[name]

    await rt.subscribers.save([rt.subscribers.validate({"channel": "email", "address": "a@ex.jp"})])
    later = (datetime.now(settings.tz) + timedelta(days=30)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    world.publish_local = local_time(later, settings.tz, year=True)
    for name in ("scheduled", "cancelled"):
        body = announcement(title=title(name), publish_at=later.isoformat())
        ids[name] = await post("/api/announcements", staff, body)
    status, _ = await api.call("DELETE", f"/api/announcements/{ids['cancelled']}", staff)
    assert status == 200
    translated = announcement(
        title=title("done"),
        url="https://www.city.nerima.tokyo.jp/gomi",
        translations={"en": {"title": "Bulky waste <days>", "body": "They change."}},
    )
    ids["done"] = await post("/api/announcements", staff, translated)

    await issue("pending", severity="advisory")
    await post(f"/api/alerts/{await issue('withdrawn')}/cancel", desk)  # before approval
    await approve(await issue("active"))
    await issue("update_pending", severity="warning", supersedes=ids["active"])
    await call_off("all_clear_pending", ids["active"])
    await approve(await issue("superseded"))
    await approve(await issue("update", supersedes=ids["superseded"]))
    await approve(await issue("called_off"))
    await approve(await call_off("all_clear", ids["called_off"]))
    await approve(await issue("drill", query="?drill=true"))
    xml = {"Content-Type": "application/cap+xml"}
    ids["cap"] = await post("/api/alerts", desk, data=cap_alert(), headers=xml)
    await approve(ids["cap"])
    for notice_id in ids.values():  # let every delivery settle
        record = await rt.notices.get(notice_id)
        if record is not None and record["status"] in ("queued", "dispatching"):
            await finished(rt, notice_id)

    # States too short to catch, or reached only by a fault: written as the store writes them
    ids["queued"] = await _write_record(rt, settings, "queued", "queued")  # no progress yet
    ids["dispatching"] = await _write_record(rt, settings, "dispatching", "dispatching")
    await rt.redis.hset(
        rt.keys.progress(ids["dispatching"]),
        mapping={
            "line:recipients": 4,
            "line:sent": 1,
            "line:pending": 3,
            "email:recipients": 3,
            "email:sent": 1,
            "email:failed": 1,
            "email:pending": 1,
        },
    )
    error = "RuntimeError('template broke')"  # as the dispatcher records a fault of ours
    ids["failed"] = await _write_record(rt, settings, "failed", "failed", error=error)
    await rt.redis.set(rt.keys.paused("email"), "monthly limit")  # nothing else is pending

    for name, (status_, state, tags_) in STATES.items():
        record = await rt.notices.get(ids[name])
        assert record is not None
        assert (record["status"], record.get("state")) == (status_, state), name
        notice = record["notice"]
        world.cases[name] = Case(
            id=ids[name],
            title=notice["title"],
            kind=record["kind"],
            status=status_,
            state=state,
            tags=tags_,
            drill=bool(notice.get("drill")),
            areas=notice["areas"],
            audited=name not in WRITTEN,
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    now = datetime.now(make_settings(tmp_path_factory.mktemp("tz"), prefix).tz)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    settings = make_settings(
        tmp_path_factory.mktemp("pages"),
        prefix,
        alert_approval=True,
        quiet_hours=quiet,  # routine LINE pushes wait; nobody here reads LINE
        signin_rate_per_ip=1000,
    )
    service = Service(settings, grace=5.0)
    await service.start()
    runtime = Runtime.open(settings)
    base = f"http://127.0.0.1:{service.port}"
    tokens = {
        role: await runtime.tokens.create(role, f"{role}-tester")
        for role in ("staff", "emergency", "admin")
    }
    second = await runtime.tokens.create("emergency", "second-desk")
    jar = aiohttp.CookieJar
    try:
        async with (
            aiohttp.ClientSession() as plain,
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as s1,
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as s2,
            aiohttp.ClientSession(cookie_jar=jar(unsafe=True)) as s3,
        ):
            world = World(
                settings=settings,
                runtime=runtime,
                base=base,
                tokens=tokens,
                staff=await _console(s1, base, tokens["staff"]),
                desk=await _console(s2, base, tokens["emergency"]),
                admin=await _console(s3, base, tokens["admin"]),
                cases={},
                publish_local="",
            )
            await _build(world, Api(plain, base), tokens["emergency"], second)
            yield world
    finally:
        await runtime.close()
        await service.stop()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def ok(status: int, page: str) -> None:
    assert status == 200, page[:500]
    assert '"internal"' not in page


def row(page: str, notice_id: str) -> str:
    start = page.index(f'<tr id="notice-{notice_id}"')
    return page[start : page.index("</tr>", start)]


def card(page: str, alert_id: str) -> str:
    start = page.index(f'<li id="alert-{alert_id}"')
    return page[start : page.index("</li>", start)]


def tags(html: str) -> list[str]:
    return re.findall(r'<span class="tag[^"]*">([^<]+)</span>', html)


def shown(case: Case, html: str) -> None:
    """The title is there, escaped, and nowhere raw."""
    assert str(escape(case.title)) in html
    assert "<b>確認</b>" not in html


@pytest.mark.parametrize("state", STATES)
async def test_the_notices_page_lists_it_with_its_status_and_marks(
    world: World, state: str
) -> None:
    case = world.cases[state]
    status, page, _ = await world.staff.get("/console/notices?done=queued")
    ok(status, page)
    html = row(page, case.id)
    shown(case, html)
    cell = re.search(r'<td class="status" data-status="(\w+)">([^<]*)</td>', html)
    assert cell is not None and cell.groups() == (case.status, STATUS_NAMES[case.status])
    title_cell = html.split("</td>", 1)[0]
    assert tags(title_cell) == case.tags
    if case.state in STATE_WORDS:
        assert f"警報：{STATE_WORDS[case.state]}" in title_cell
    else:
        assert "警報：" not in title_cell
    assert ("配信予定 " + world.publish_local in title_cell) == (
        state in ("scheduled", "cancelled")
    )
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", html)  # no raw ISO times
    if state == "dispatching":
        assert "夜間のため" in html and "まで保留" in html  # LINE in the quiet hours
        assert "一時停止中" in html and "（失敗 1）" in html  # email paused
        assert "1/4" in html and "1/3" in html


@pytest.mark.parametrize("state", STATES)
async def test_the_progress_feed_has_it(world: World, state: str) -> None:
    case = world.cases[state]
    status, text, response = await world.staff.get("/console/notices/progress")
    assert status == 200 and response.content_type == "application/json"
    found = {n["id"]: n for n in json.loads(text)["notices"]}
    assert found[case.id]["status"] == case.status
    progress = found[case.id]["progress"]
    assert all({"recipients", "sent", "failed", "pending"} <= set(p) for p in progress.values())
    if state == "dispatching":
        assert progress["email"]["waits"] == "一時停止中"
        assert progress["line"]["waits"].startswith("夜間のため")


@pytest.mark.parametrize("state", STATES)
async def test_the_emergency_page_lists_it_while_active_or_pending(
    world: World, state: str
) -> None:
    case = world.cases[state]
    status, page, _ = await world.desk.get("/console/emergency")
    ok(status, page)
    assert (f'id="alert-{case.id}"' in page) == case.on_desk
    if not case.on_desk:
        return
    html = card(page, case.id)
    shown(case, html)
    assert tags(html) == case.tags
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", html)
    if case.state == "pending":
        assert "承認待ち" in html and "承認して発信" in html and "取り下げ" in html
    else:
        assert "発信中" in html and "更新する" in html and "解除を発信" in html


@pytest.mark.parametrize("state", [*STATES, "missing"])
async def test_the_update_form_starts_from_an_active_alert_only(world: World, state: str) -> None:
    case = world.cases.get(state)
    alert_id = case.id if case else "nosuchalert"
    status, page, _ = await world.desk.get(f"/console/emergency?supersedes={alert_id}")
    assert '"internal"' not in page
    if case is None or case.kind != "alert":
        assert status == 404 and "見つかりません" in page
    elif case.state != "active":
        assert status == 409 and "この警報は更新できません" in page
    else:
        ok(status, page)
        assert "警報の更新" in page
        assert f'name="supersedes" value="{case.id}"' in page
        assert f'value="{escape(case.title)}"' in page
        drill = re.search(r'<input type="checkbox" name="drill" ?(checked)?>', page)
        assert drill is not None and bool(drill.group(1)) == case.drill


@pytest.mark.parametrize("state", [*STATES, "new"])
async def test_the_confirmation_shows_the_update_as_it_will_go_out(
    world: World, state: str
) -> None:
    case = world.cases.get(state)
    await world.desk.get("/console/emergency")
    form = [
        ("title", title("confirm")),
        ("body", "避難してください。"),
        ("severity", "warning"),
        ("areas", "oizumi"),
    ]
    if case is not None:
        form.append(("supersedes", case.id))
    status, page, _ = await world.desk.post("/console/emergency/confirm", form)
    assert '"internal"' not in page
    if case is not None and case.kind != "alert":
        assert status == 404 and "見つかりません" in page
        return
    if case is not None and case.state != "active":
        assert status == 409 and "この警報は更新できません" in page
        return
    ok(status, page)
    assert "この内容で発信しますか" in page and str(escape(title("confirm"))) in page
    marks = tags(page.split('<div class="card', 1)[1].split("</p>", 1)[0])
    drill = case is not None and case.drill
    assert marks == [*(["訓練"] if drill else []), "警戒", *(["更新"] if case else [])]
    audience = dict(
        re.findall(r'data-channel="(\w+)"><th scope="row">[^<]+</th><td>([^<]+)<', page)
    )
    assert ("x" in audience) == (not drill)  # a drill is never posted for all to see
    assert ('name="drill" value="on"' in page) == drill
    areas = re.findall(r'name="areas" value="(\w+)"', page)
    assert areas == [*(case.areas if case else []), "oizumi"]  # as it will go: all it reached


@pytest.mark.parametrize("state", STATES)
async def test_the_compose_page_renders(world: World, state: str) -> None:
    status, page, _ = await world.staff.get("/console/compose")
    ok(status, page)
    assert "お知らせの作成" in page and f'id="notice-{world.cases[state].id}"' not in page


@pytest.mark.parametrize("state", STATES)
async def test_the_subscribers_page_renders(world: World, state: str) -> None:
    status, page, _ = await world.admin.get("/console/subscribers")
    ok(status, page)
    assert re.search(r'id="counts-channel".*?data-code="email">1<', page, re.S)
    assert str(escape(world.cases[state].title)) not in page


@pytest.mark.parametrize("state", STATES)
async def test_the_audit_page_shows_what_was_done_to_it(world: World, state: str) -> None:
    case = world.cases[state]
    status, page, _ = await world.admin.get("/console/audit")
    ok(status, page)
    assert (f"<td>{case.id}</td>" in page or f"：{case.id}" in page) == case.audited


@pytest.mark.parametrize("state", STATES)
async def test_signing_in_lands_on_the_list_with_it(world: World, state: str) -> None:
    case = world.cases[state]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        console = Console(session, world.base)
        response = await console.sign_in(token=world.tokens["staff"])
        assert response.status == 303 and response.headers["Location"] == "/console/notices"
        status, page, _ = await console.get(response.headers["Location"])
    ok(status, page)
    shown(case, row(page, case.id))


async def test_calling_off_says_what_happened_withdrawn_or_waiting_for_approval(
    world: World,
) -> None:
    desk = world.desk
    await desk.get("/console/emergency")
    form = {"title": title("to withdraw"), "body": "避難してください。", "severity": "warning"}
    status, _, r = await desk.post("/console/emergency/issue", form)
    assert status == 303 and r.headers["Location"] == "/console/emergency?done=pending_approval"
    (pending,) = await world.runtime.notices.list(None, 1)
    assert pending["state"] == "pending"
    status, _, r = await desk.post(f"/console/alerts/{pending['id']}/cancel")
    assert status == 303 and r.headers["Location"] == "/console/emergency?done=withdrawn"
    (entry, *_) = await world.runtime.audit.recent(1)
    assert entry["action"] == "alert.withdraw" and "all_clear" not in entry  # none went out
    status, page, _ = await desk.get(r.headers["Location"])
    ok(status, page)
    assert "取り下げました。" in page and f'id="alert-{pending["id"]}"' not in page

    status, _, r = await desk.post(f"/console/alerts/{world.cases['cap'].id}/cancel")
    assert r.headers["Location"] == "/console/emergency?done=pending_approval"  # not sent yet
    status, page, _ = await desk.get(r.headers["Location"])
    assert "承認待ちです" in page and "解除を発信しました" not in page
