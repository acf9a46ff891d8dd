"""End to end: the API → intake → dispatcher → channel workers → outbox files."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.logs import JsonFormatter
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import Api, announcement, channel_progress, wait_for
from tests.line_spec import errors as line_errors

LINE_A = "U" + "a" * 32
LINE_B = "U" + "b" * 32
LINE_C = "U" + "c" * 32
LINE_D = "U" + "d" * 32


async def add(runtime: Runtime, **fields: Any) -> str:
    sub = runtime.subscribers.validate(fields)
    ((subscriber_id, _),) = await runtime.subscribers.save([sub])
    return subscriber_id


async def done(api: Api, token: str, notice_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, body = await api.call("GET", f"/api/announcements/{notice_id}", token)
        assert status == 200
        return body if body["status"] in ("done", "failed") else None

    result: dict[str, Any] = await wait_for(check)
    return result


def read_eml(path: Path) -> email.message.EmailMessage:
    with path.open("rb") as fh:
        msg = email.message_from_binary_file(fh, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


async def test_each_channel_gets_exactly_its_audience_in_its_language(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Any
) -> None:
    a = await add(runtime, channel="line", address=LINE_A, areas=["nerima"])
    b = await add(
        runtime, channel="line", address=LINE_B, areas=["oizumi"], topics=["garbage"], language="en"
    )
    await add(runtime, channel="line", address=LINE_C, areas=["shakujii"])  # other area
    await add(runtime, channel="line", address=LINE_D, topics=["events"])  # other topic
    e = await add(
        runtime, channel="email", address="taro@example.jp", name="山田太郎", language="en"
    )
    f = await add(
        runtime,
        channel="email",
        address="li@example.cn",
        areas=["nerima"],
        topics=["garbage"],
        language="zh",
    )
    await add(runtime, channel="email", address="hana@example.jp", areas=["hikarigaoka"])
    await add(runtime, channel="print", address="練馬区豊玉北6-12-1", name="練馬花子")

    status, body = await api.call(
        "POST",
        "/api/announcements",
        tokens["staff"],
        announcement(
            areas=["nerima", "oizumi"],
            url="https://www.city.nerima.tokyo.jp/kurashi/gomi/",
            translations={"en": {"title": "Bulky waste days change", "body": "From December."}},
        ),
    )
    assert status == 202, body
    notice_id = body["id"]
    result = await done(api, tokens["staff"], notice_id)
    assert result["status"] == "done"
    assert result["progress"] == {
        "line": {"audience": 2, "recipients": 2, "sent": 2, "failed": 0, "pending": 0},
        "x": {"recipients": 1, "sent": 1, "failed": 0, "pending": 0},
        "email": {"audience": 2, "recipients": 2, "sent": 2, "failed": 0, "pending": 0},
        "print": {"recipients": 2, "sent": 2, "failed": 0, "pending": 0},
    }

    outbox = settings.outbox_dir
    line_files = sorted((outbox / "line").glob("*.json"))
    requests = {p.name: json.loads(p.read_text()) for p in line_files}
    assert set(requests) == {f"{notice_id}-en-0000.json", f"{notice_id}-ja-0001.json"}
    english, japanese = requests[f"{notice_id}-en-0000.json"], requests[f"{notice_id}-ja-0001.json"]
    assert english["to"] == [LINE_B] and japanese["to"] == [LINE_A]
    assert english["messages"][0]["altText"].startswith("Bulky waste days change")
    assert japanese["messages"][0]["altText"].startswith("粗大ごみの収集日が変わります")
    for request in requests.values():
        assert line_errors(request, "MulticastRequest") == []

    (x_file,) = (outbox / "x").glob("*.json")
    (post,) = json.loads(x_file.read_text())  # the create-post requests: one post here
    assert "粗大ごみの収集日が変わります" in post["text"]
    assert "https://www.city.nerima.tokyo.jp/kurashi/gomi/" in post["text"]

    mails = {p.name: read_eml(p) for p in (outbox / "email").glob("*.eml")}
    assert set(mails) == {f"{notice_id}-{e}.eml", f"{notice_id}-{f}.eml"}
    to_e, to_f = mails[f"{notice_id}-{e}.eml"], mails[f"{notice_id}-{f}.eml"]
    assert to_e["To"] == "taro@example.jp" and to_f["To"] == "li@example.cn"
    assert "Bulky waste days change" in to_e["Subject"]
    assert "粗大ごみ" in to_f["Subject"]  # no Chinese translation: Japanese stands in
    for msg in mails.values():
        assert msg.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert msg["Message-ID"] and msg["Date"]

    entries = sorted(p.relative_to(outbox / "print") for p in (outbox / "print").rglob("*.html"))
    assert entries == [Path("nerima", f"{notice_id}.html"), Path("oizumi", f"{notice_id}.html")]
    html = (outbox / "print" / "nerima" / f"{notice_id}.html").read_text()
    assert "粗大ごみの収集日が変わります" in html and "<h2>" in html
    pool = await runtime.redis.zrange(runtime.keys.digest_pool("nerima"), 0, -1)
    assert pool == [notice_id.encode()]
    assert await runtime.redis.zrange(runtime.keys.digest_pool("shakujii"), 0, -1) == []
    assert a and b


async def test_channels_field_limits_delivery_and_whole_ward_reaches_every_area(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Any
) -> None:
    await add(runtime, channel="line", address=LINE_A, areas=["oizumi"])
    status, body = await api.call(
        "POST",
        "/api/announcements",
        tokens["staff"],
        announcement(areas=[], channels=["print", "x"]),
    )
    assert status == 202
    result = await done(api, tokens["staff"], body["id"])
    assert set(result["progress"]) == {"print", "x"}
    assert result["progress"]["print"]["sent"] == 4
    assert not (settings.outbox_dir / "line").exists()
    areas = sorted(p.name for p in (settings.outbox_dir / "print").iterdir())
    assert areas == ["hikarigaoka", "nerima", "oizumi", "shakujii"]


async def test_html_is_escaped_in_html_and_left_alone_in_text(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Any
) -> None:
    await add(runtime, channel="email", address="taro@example.jp")
    status, body = await api.call(
        "POST",
        "/api/announcements",
        tokens["staff"],
        announcement(title="<b>説明会</b> & 相談会", areas=[]),
    )
    assert status == 202
    await done(api, tokens["staff"], body["id"])
    (eml,) = (settings.outbox_dir / "email").glob("*.eml")
    msg = read_eml(eml)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "&lt;b&gt;説明会&lt;/b&gt; &amp; 相談会" in html and "<b>説明会" not in html
    assert "<b>説明会</b> & 相談会" in text
    entry = next((settings.outbox_dir / "print").rglob("*.html")).read_text()
    assert "&lt;b&gt;" in entry


async def test_no_audience_is_done_at_once(api: Api, tokens: dict[str, str], settings: Any) -> None:
    status, body = await api.call(
        "POST", "/api/announcements", tokens["staff"], announcement(channels=["line", "email"])
    )
    assert status == 202
    result = await done(api, tokens["staff"], body["id"])
    assert result["progress"]["line"] == channel_progress(0)
    assert result["status"] == "done"


async def test_unsubscribed_before_delivery_is_not_sent(
    runtime: Runtime, settings: Any, tokens: dict[str, str]
) -> None:
    """A resident who leaves between dispatch and delivery gets nothing."""
    keep = await add(runtime, channel="line", address=LINE_A)
    leave = await add(runtime, channel="line", address=LINE_B)
    dispatcher_only = Service(settings, parts=["api", "dispatch"])
    await dispatcher_only.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Api(session, f"http://127.0.0.1:{dispatcher_only.port}")
            status, body = await client.call(
                "POST", "/api/announcements", tokens["staff"], announcement(channels=["line"])
            )
            assert status == 202

            async def queued() -> bool:
                return await runtime.redis.xlen(runtime.keys.delivery("line", "normal")) == 1

            await wait_for(queued)
    finally:
        await dispatcher_only.stop()
    assert await runtime.subscribers.delete(leave)
    workers = Service(settings, parts=["workers"])
    await workers.start()
    try:

        async def finished() -> dict[str, Any] | None:
            found = await runtime.notices.get(body["id"])
            return found if found and found["status"] == "done" else None

        result = await wait_for(finished)
    finally:
        await workers.stop()
    # the audience is counted when planned; the one who left is counted failed
    assert result["progress"]["line"] == channel_progress(2, failed=1)
    (request,) = [json.loads(p.read_text()) for p in (settings.outbox_dir / "line").glob("*")]
    assert request["to"] == [LINE_A]
    assert keep


async def test_logs_are_json_events_without_personal_data(
    api: Api, runtime: Runtime, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    people = {"line": LINE_A, "email": "hanako.nerima@example.jp", "print": "練馬区豊玉北6-12-1"}
    await add(runtime, channel="line", address=people["line"])
    await add(runtime, channel="email", address=people["email"], name="練馬花子")
    await add(runtime, channel="print", address=people["print"], name="練馬花子")
    _, body = await api.call("POST", "/api/announcements", tokens["staff"], announcement())
    await done(api, tokens["staff"], body["id"])
    await api.call(
        "POST",
        "/api/subscribers",
        tokens["admin"],
        {"channel": "email", "address": "bad@@example.jp"},
    )
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    events = [json.loads(line)["event"] for line in lines]
    assert "notice.dispatched" in events and "batch.send" in events
    text = "\n".join(lines)
    for value in [*people.values(), "練馬花子", "bad@@example.jp", tokens["staff"]]:
        assert value not in text
