"""The emergency desk's API end to end (every channel in outbox mode): JSON and CAP alerts,
updates and the all-clear, the two-person rule, drills, roles, the audit log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pypdf import PdfReader

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import Api, channel_progress, make_settings, wait_for
from tests.notifier.test_cap import cap
from tests.notifier.test_pipeline import add, read_eml

NERIMA_GARBAGE = "U" + "a" * 32  # in Nerima, chose only garbage notices
OIZUMI = "U" + "b" * 32
WHOLE_WARD_EN = "U" + "c" * 32
CAP_XML = {"Content-Type": "application/cap+xml"}


def alert(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "避難指示（緊急）",
        "body": "石神井川が氾濫するおそれがあります。\n\n直ちに避難してください。",
        "severity": "emergency",
        "areas": ["nerima"],
    }
    body.update(fields)
    return body


async def subscribe_three(runtime: Runtime) -> dict[str, str]:
    return {
        "garbage": await add(
            runtime, channel="line", address=NERIMA_GARBAGE, areas=["nerima"], topics=["garbage"]
        ),
        "oizumi": await add(runtime, channel="line", address=OIZUMI, areas=["oizumi"]),
        "whole_en": await add(runtime, channel="line", address=WHOLE_WARD_EN, language="en"),
        "mail": await add(
            runtime, channel="email", address="hanako@example.jp", areas=["nerima"], topics=["tax"]
        ),
    }


async def done(api: Api, token: str, alert_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, body = await api.call("GET", f"/api/alerts/{alert_id}", token)
        assert status == 200, body
        return body if body["status"] in ("done", "failed") else None

    result: dict[str, Any] = await wait_for(check)
    return result


def line_requests(settings: Settings, alert_id: str) -> list[dict[str, Any]]:
    files = sorted((settings.outbox_dir / "line").glob(f"{alert_id}-*.json"))
    return [json.loads(p.read_text()) for p in files]


def line_users(settings: Settings, alert_id: str) -> set[str]:
    return {user for request in line_requests(settings, alert_id) for user in request["to"]}


async def test_an_alert_reaches_everyone_in_its_areas_on_every_channel_whatever_their_topics(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    ids = await subscribe_three(runtime)
    english = {"en": {"title": "Evacuation order", "body": "Leave now for the nearest shelter."}}
    status, body = await api.call(
        "POST", "/api/alerts", tokens["emergency"], alert(translations=english)
    )
    assert status == 202, body
    alert_id = body["id"]
    result = await done(api, tokens["emergency"], alert_id)
    assert result["kind"] == "alert" and result["state"] == "active"
    assert result["requested_by"] == "emergency-tester"
    assert result["progress"]["line"] == channel_progress(2)
    assert result["progress"]["email"]["sent"] == 1
    assert line_users(settings, alert_id) == {NERIMA_GARBAGE, WHOLE_WARD_EN}

    japanese = next(r for r in line_requests(settings, alert_id) if r["to"] == [NERIMA_GARBAGE])
    bubble = japanese["messages"][0]["contents"]
    assert bubble["header"]["backgroundColor"] == "#b00020"  # the urgent style
    assert bubble["header"]["contents"][0]["text"].startswith("【緊急】練馬区 緊急情報")
    english = next(r for r in line_requests(settings, alert_id) if r["to"] == [WHOLE_WARD_EN])
    assert english["messages"][0]["altText"].startswith("[EMERGENCY] Evacuation order")
    assert japanese["messages"][0]["altText"].startswith("【緊急】避難指示（緊急）\n")
    header = english["messages"][0]["contents"]["header"]["contents"][0]["text"]
    assert header.startswith("[EMERGENCY] Nerima City emergency information")

    (mail,) = [read_eml(p) for p in (settings.outbox_dir / "email").glob(f"{alert_id}-*.eml")]
    assert mail["Subject"].startswith("【緊急】【練馬区】避難指示（緊急）")
    assert ids["mail"] in str(next((settings.outbox_dir / "email").glob("*.eml")))

    (x_file,) = (settings.outbox_dir / "x").glob(f"{alert_id}.json")
    (post,) = json.loads(x_file.read_text())
    assert post["text"].startswith("【緊急】避難指示（緊急）")
    assert "#防災" in post["text"] and "#緊急" in post["text"]

    flyers = sorted(p.name for p in (settings.print_dir / "alerts").glob("*.pdf"))
    assert flyers == [f"{alert_id}-nerima.pdf"]  # the affected area only
    (page,) = PdfReader(settings.print_dir / "alerts" / flyers[0]).pages
    flyer = page.extract_text().replace(" ", "")
    assert "【緊急】" in flyer and "避難指示（緊急）" in flyer and "03-3993-1111" in flyer
    assert await runtime.redis.zcard(runtime.keys.digest_pool("nerima")) == 0  # never digested


async def test_staff_and_strangers_may_not_issue_alerts(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    assert (await api.call("POST", "/api/alerts", tokens["staff"], alert()))[0] == 403
    assert (await api.call("POST", "/api/alerts", None, alert()))[0] == 401
    assert (await api.call("POST", "/api/alerts", "not-a-token", alert()))[0] == 401
    staff_cap = await api.call("POST", "/api/alerts", tokens["staff"], data=cap(), headers=CAP_XML)
    assert staff_cap[0] == 403
    assert await runtime.redis.xlen(runtime.keys.intake_urgent) == 0
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": None}, "severity"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"areas": ["shibuya"]}, "areas"),
        ({"title": ""}, "title"),
        ({"id": "mine"}, "id"),
        ({"drill": True}, "drill"),
        ({"type": "cancel"}, "type"),
        ({"topics": ["garbage"]}, "topics"),
        ({"publish_at": "2030-01-01T09:00:00+09:00"}, "publish_at"),
        ({"url": "http://example.jp/"}, "url"),
    ],
)
async def test_a_bad_alert_is_refused_naming_the_field_and_nothing_is_queued(
    api: Api, runtime: Runtime, tokens: dict[str, str], change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**alert(), **change}.items() if v is not None}
    status, answer = await api.call("POST", "/api/alerts", tokens["emergency"], body)
    assert status == 400, answer
    assert field in answer["error"]["fields"], answer
    assert await runtime.redis.xlen(runtime.keys.intake_urgent) == 0
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


async def test_update_and_all_clear_reach_the_same_audience_and_follow_the_alerts_state(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    await subscribe_three(runtime)
    desk = tokens["emergency"]
    _, first = await api.call("POST", "/api/alerts", desk, alert(severity="warning"))
    await done(api, desk, first["id"])
    # the update names Oizumi only: those who got the first alert get the update too
    update = alert(severity="emergency", areas=["oizumi"], supersedes=first["id"])
    status, second = await api.call("POST", "/api/alerts", desk, update)
    assert status == 202, second
    result = await done(api, desk, second["id"])
    assert result["notice"]["type"] == "update" and result["references"] == first["id"]
    assert line_users(settings, second["id"]) == {NERIMA_GARBAGE, OIZUMI, WHOLE_WARD_EN}
    (request,) = [r for r in line_requests(settings, second["id"]) if r["to"] != [WHOLE_WARD_EN]]
    assert request["messages"][0]["altText"].startswith("【緊急】【更新】避難指示")
    header = request["messages"][0]["contents"]["header"]["contents"][0]["text"]
    assert header.startswith("【緊急】【更新】")

    _, original = await api.call("GET", f"/api/alerts/{first['id']}", desk)
    assert original["state"] == "superseded" and original["superseded_by"] == second["id"]
    again = await api.call("POST", "/api/alerts", desk, alert(supersedes=first["id"]))
    assert again[0] == 409, again
    unknown = await api.call("POST", "/api/alerts", desk, alert(supersedes="nosuchalert"))
    assert unknown[0] == 404

    status, clear = await api.call("POST", f"/api/alerts/{second['id']}/cancel", desk)
    assert status == 202, clear
    assert clear["cancels"] == second["id"]
    result = await done(api, desk, clear["id"])
    assert result["state"] == "all-clear" and result["notice"]["type"] == "cancel"
    assert line_users(settings, clear["id"]) == {NERIMA_GARBAGE, OIZUMI, WHOLE_WARD_EN}
    (mail,) = [read_eml(p) for p in (settings.outbox_dir / "email").glob(f"{clear['id']}-*.eml")]
    assert mail["Subject"].startswith("【解除】")
    assert "解除されました" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    _, cancelled = await api.call("GET", f"/api/alerts/{second['id']}", desk)
    assert cancelled["state"] == "cancelled"
    assert (await api.call("POST", f"/api/alerts/{second['id']}/cancel", desk))[0] == 409
    assert (await api.call("POST", f"/api/alerts/{clear['id']}/cancel", desk))[0] == 409
    assert (await api.call("POST", "/api/alerts/nosuchalert/cancel", desk))[0] == 404
    staff = await api.call("POST", f"/api/alerts/{first['id']}/cancel", tokens["staff"])
    assert staff[0] == 403


@pytest.fixture
async def approving(tmp_path: Path, prefix: str) -> AsyncIterator[tuple[Api, Settings]]:
    settings = make_settings(tmp_path, prefix, alert_approval=True)
    service = Service(settings, grace=5.0)
    await service.start()
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{service.port}"), settings
    await service.stop()


async def test_with_the_two_person_rule_an_alert_waits_for_a_second_desk_and_is_audited(
    approving: tuple[Api, Settings], runtime: Runtime, tokens: dict[str, str]
) -> None:
    api, settings = approving
    await subscribe_three(runtime)
    first_desk = tokens["emergency"]
    second_desk = await runtime.tokens.create("emergency", "desk-2")
    status, body = await api.call("POST", "/api/alerts", first_desk, alert())
    assert (status, body["status"]) == (202, "pending_approval")
    alert_id = body["id"]
    assert await runtime.redis.xlen(runtime.keys.intake_urgent) == 0
    _, pending = await api.call("GET", f"/api/alerts/{alert_id}", first_desk)
    assert pending["state"] == "pending"

    same = await api.call("POST", f"/api/alerts/{alert_id}/approve", first_desk)
    assert same[0] == 403 and same[1]["error"]["code"] == "same_person"
    assert (await api.call("POST", f"/api/alerts/{alert_id}/approve", tokens["staff"]))[0] == 403
    status, approved = await api.call("POST", f"/api/alerts/{alert_id}/approve", second_desk)
    assert (status, approved["status"]) == (202, "queued")
    result = await done(api, first_desk, alert_id)
    assert result["approved_by"] == "desk-2" and result["progress"]["line"]["sent"] == 2
    assert (await api.call("POST", f"/api/alerts/{alert_id}/approve", second_desk))[0] == 409

    # a pending alert called off before approval is withdrawn: nothing goes out
    _, other = await api.call("POST", "/api/alerts", first_desk, alert(title="誤報"))
    status, withdrawn = await api.call("POST", f"/api/alerts/{other['id']}/cancel", first_desk)
    assert (status, withdrawn["status"]) == (200, "cancelled")
    assert (await api.call("POST", f"/api/alerts/{other['id']}/approve", second_desk))[0] == 409
    assert not list((settings.outbox_dir / "line").glob(f"{other['id']}-*"))

    assert (await api.call("GET", "/api/audit", first_desk))[0] == 403
    status, audit = await api.call("GET", "/api/audit", tokens["admin"])
    assert status == 200
    actions = [(e["action"], e["who"], e["outcome"]) for e in reversed(audit["audit"])]
    assert actions == [
        ("alert.issue", "emergency-tester", "pending_approval"),
        ("alert.approve", "emergency-tester", "same_person"),
        ("alert.approve", "staff-tester", "forbidden"),  # refused for the role: recorded too
        ("alert.approve", "desk-2", "queued"),
        ("alert.approve", "desk-2", "not_pending"),
        ("alert.issue", "emergency-tester", "pending_approval"),
        ("alert.withdraw", "emergency-tester", "cancelled"),
        ("alert.approve", "desk-2", "not_pending"),
        ("audit.read", "emergency-tester", "forbidden"),
    ]
    assert all(e["from"] == "127.0.0.1" and e["at"] > 0 for e in audit["audit"])
    assert first_desk not in json.dumps(audit) and second_desk not in json.dumps(audit)


async def test_a_drill_reaches_only_the_test_audience_marked_as_a_drill(
    tmp_path: Path, prefix: str, runtime: Runtime, tokens: dict[str, str]
) -> None:
    ids = await subscribe_three(runtime)
    settings = make_settings(tmp_path, prefix, alert_test_audience=[ids["whole_en"], ids["mail"]])
    service = Service(settings, grace=5.0)
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{service.port}")
            desk = tokens["emergency"]
            status, body = await api.call("POST", "/api/alerts?drill=true", desk, alert())
            assert status == 202, body
            result = await done(api, desk, body["id"])
            status, exercise = await api.call(
                "POST", "/api/alerts", desk, data=cap(status="Exercise"), headers=CAP_XML
            )
            assert status == 202, exercise
            from_cap = await done(api, desk, exercise["id"])
    finally:
        await service.stop()
    for drill in (result, from_cap):
        assert drill["notice"]["drill"] is True
        assert line_users(settings, drill["id"]) == {WHOLE_WARD_EN}  # not the Nerima resident
        assert drill["progress"]["x"]["recipients"] == 0  # a drill is never posted publicly
        assert not (settings.outbox_dir / "x").exists()
        (mail,) = [
            read_eml(p) for p in (settings.outbox_dir / "email").glob(f"{drill['id']}-*.eml")
        ]
        assert mail["Subject"].startswith("【訓練】【緊急】")
        (request,) = line_requests(settings, drill["id"])
        header = request["messages"][0]["contents"]["header"]["contents"][0]["text"]
        assert header.startswith("【訓練】【緊急】練馬区 緊急情報")


async def test_cap_alert_update_and_cancel_through_the_api(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    await subscribe_three(runtime)
    desk = tokens["emergency"]
    status, first = await api.call("POST", "/api/alerts", desk, data=cap(), headers=CAP_XML)
    assert status == 202, first
    result = await done(api, desk, first["id"])
    assert result["notice"]["title"] == "練馬区に大雨特別警報"
    assert result["notice"]["areas"] == [] and result["notice"]["severity"] == "emergency"
    assert line_users(settings, first["id"]) == {NERIMA_GARBAGE, OIZUMI, WHOLE_WARD_EN}
    # the same message again (a sender's retry): the first answer, nothing sent twice
    status, again = await api.call("POST", "/api/alerts", desk, data=cap(), headers=CAP_XML)
    assert (status, again["id"]) == (202, first["id"])

    ref = "jma@example.jp,JMA-2026-0001,2026-11-26T09:00:00+09:00"
    update = cap(identifier="JMA-2026-0002", msg_type="Update", references=ref)
    status, second = await api.call("POST", "/api/alerts", desk, data=update, headers=CAP_XML)
    assert status == 202, second
    await done(api, desk, second["id"])
    _, original = await api.call("GET", f"/api/alerts/{first['id']}", desk)
    assert original["state"] == "superseded"

    refs = f"{ref} jma@example.jp,JMA-2026-0002,2026-11-26T09:30:00+09:00"
    cancel = cap(identifier="JMA-2026-0003", msg_type="Cancel", references=refs, info="")
    status, clear = await api.call("POST", "/api/alerts", desk, data=cancel, headers=CAP_XML)
    assert status == 202, clear
    cleared = await done(api, desk, clear["id"])
    assert cleared["notice"]["type"] == "cancel" and cleared["references"] == second["id"]

    stranger = cap(
        identifier="X-1", msg_type="Update", references="a@b,none,2026-11-26T09:00:00+09:00"
    )
    unknown = await api.call("POST", "/api/alerts", desk, data=stranger, headers=CAP_XML)
    assert unknown[0] == 404


async def test_an_alert_without_areas_reaches_the_whole_ward_json_or_cap(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    await subscribe_three(runtime)
    desk, everyone = tokens["emergency"], {NERIMA_GARBAGE, OIZUMI, WHOLE_WARD_EN}
    without = alert(channels=["line"])
    del without["areas"]
    status, body = await api.call("POST", "/api/alerts", desk, without)
    assert status == 202, body
    result = await done(api, desk, body["id"])
    assert result["notice"]["areas"] == [] and result["progress"]["line"]["sent"] == 3
    assert line_users(settings, body["id"]) == everyone
    area = "<area><areaDesc>東京都練馬区</areaDesc></area>".encode()
    no_area = cap(identifier="JMA-2026-0100").replace(area, b"")
    assert b"<area>" not in no_area  # CAP's <area> is optional
    status, body = await api.call("POST", "/api/alerts", desk, data=no_area, headers=CAP_XML)
    assert status == 202, body
    result = await done(api, desk, body["id"])
    assert result["notice"]["areas"] == []
    assert line_users(settings, body["id"]) == everyone


async def test_a_bad_cap_document_is_refused_naming_the_element_and_nothing_is_sent(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    status, body = await api.call(
        "POST", "/api/alerts", tokens["emergency"], data=cap(severity="Huge"), headers=CAP_XML
    )
    assert status == 400
    assert body["error"]["code"] == "invalid_cap"
    assert list(body["error"]["fields"]) == ["alert/info/severity"]
    assert "Huge" in body["error"]["message"]
    bomb = cap(doctype='<!DOCTYPE alert [<!ENTITY x "x">]>')
    assert (await api.call("POST", "/api/alerts", tokens["emergency"], data=bomb, headers=CAP_XML))[
        0
    ] == 400
    assert await runtime.redis.xlen(runtime.keys.intake_urgent) == 0
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


async def test_an_alert_sent_again_with_its_idempotency_key_is_issued_once(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    """A desk that lost the answer (a timeout, a 503 during a failover) sends the same
    request again: the first answer comes back and nothing more is issued, even when the
    alert it updated or called off is no longer active."""
    await subscribe_three(runtime)
    desk = tokens["emergency"]

    def key(k: str) -> dict[str, str]:
        return {"Idempotency-Key": k}

    status, first = await api.call("POST", "/api/alerts", desk, alert(), key("a-1"))
    assert status == 202, first
    assert await api.call("POST", "/api/alerts", desk, alert(), key("a-1")) == (202, first)
    conflict = await api.call("POST", "/api/alerts", desk, alert(title="別の見出し"), key("a-1"))
    assert conflict[0] == 422 and conflict[1]["error"]["code"] == "idempotency_conflict"
    # the key belongs to the token's account: another desk's same key is its own alert
    other_desk = await runtime.tokens.create("emergency", "desk-2")
    status, other = await api.call("POST", "/api/alerts", other_desk, alert(), key("a-1"))
    assert status == 202 and other["id"] != first["id"]
    await done(api, desk, first["id"])
    await done(api, desk, other["id"])

    update = alert(severity="warning", supersedes=first["id"])
    status, second = await api.call("POST", "/api/alerts", desk, update, key("u-1"))
    assert status == 202, second
    # the original is superseded now; the retry still answers with the one update
    assert await api.call("POST", "/api/alerts", desk, update, key("u-1")) == (202, second)
    await done(api, desk, second["id"])

    path = f"/api/alerts/{second['id']}/cancel"
    status, clear = await api.call("POST", path, desk, headers=key("c-1"))
    assert status == 202, clear
    assert await api.call("POST", path, desk, headers=key("c-1")) == (202, clear)
    await done(api, desk, clear["id"])

    raw = cap(identifier="JMA-2026-0101")
    cap_key = {**CAP_XML, **key("cap-1")}
    status, from_cap = await api.call("POST", "/api/alerts", desk, data=raw, headers=cap_key)
    assert status == 202, from_cap
    assert await api.call("POST", "/api/alerts", desk, data=raw, headers=cap_key) == (
        202,
        from_cap,
    )
    await done(api, desk, from_cap["id"])
    bad = await api.call("POST", "/api/alerts", desk, alert(), key("k" * 256))
    assert bad[0] == 400 and bad[1]["error"]["code"] == "bad_idempotency_key"

    alerts = [n for n in await runtime.notices.list(None, 100) if n["kind"] == "alert"]
    assert sorted(a["id"] for a in alerts) == sorted(
        [first["id"], other["id"], second["id"], clear["id"], from_cap["id"]]
    )
    # the first alert went once to each of its LINE residents (Nerima's and the whole ward's)
    sent = [user for r in line_requests(settings, first["id"]) for user in r["to"]]
    assert sorted(sent) == sorted([NERIMA_GARBAGE, WHOLE_WARD_EN])
    _, audit = await api.call("GET", "/api/audit", tokens["admin"])
    issued = [e for e in audit["audit"] if e["action"] in ("alert.issue", "alert.cancel")]
    assert len(issued) == 5  # a replay is not audited again
