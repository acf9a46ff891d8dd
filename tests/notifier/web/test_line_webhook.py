"""POST /line/webhook: the subscription conversation, driven by signed events as LINE sends them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest

from notifier import intake
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import (
    LINE_SECRET,
    announcement,
    line_settings,
    make_settings,
    subscriber_counts,
    wait_for,
)
from tests.fake_line import FakeLine
from tests.line_events import (
    body_and_headers,
    follow,
    payload,
    postback,
    sign,
    sticker_message,
    text_message,
    unfollow,
)

USER = "U" + "7" * 32


@pytest.fixture
def settings(tmp_path: Path, prefix: str, fake_line: FakeLine) -> Settings:
    return line_settings(tmp_path, prefix, fake_line.url)


class Resident:
    """One LINE user talking to the service through LINE's webhook, as LINE would relay it."""

    def __init__(self, session: aiohttp.ClientSession, url: str, fake: FakeLine) -> None:
        self.session, self.url, self.fake = session, url, fake

    async def send(self, *events: dict[str, Any], secret: str = LINE_SECRET) -> int:
        body, headers = body_and_headers(secret, payload(*events))
        async with self.session.post(self.url, data=body, headers=headers) as response:
            return response.status

    def token(self) -> str:
        return self.fake.issue_reply_token()

    def last_reply(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.fake.replies[-1]["messages"]
        return messages

    def choice(self, label: str) -> str:
        """The postback data behind the quick reply labelled ``label`` in the last reply."""
        for message in self.last_reply():
            for item in message.get("quickReply", {}).get("items", []):
                if item["action"]["label"] == label:
                    return str(item["action"]["data"])
        raise AssertionError(f"no quick reply {label!r} in {self.last_reply()}")


@pytest.fixture
async def resident(settings: Settings, fake_line: FakeLine) -> AsyncIterator[Resident]:
    service = Service(settings)
    await service.start()
    async with aiohttp.ClientSession() as session:
        yield Resident(session, f"http://127.0.0.1:{service.port}/line/webhook", fake_line)
    await service.stop()


async def choices_of(runtime: Runtime, user: str) -> dict[str, Any] | None:
    subscriber_id = await runtime.subscribers.find("line", user)
    sub = await runtime.subscribers.get(subscriber_id) if subscriber_id else None
    return (
        None
        if sub is None
        else {"areas": sub.areas, "topics": sub.topics, "language": sub.language}
    )


async def test_follow_choose_receive_and_leave(
    resident: Resident, runtime: Runtime, fake_line: FakeLine
) -> None:
    assert await resident.send(follow(USER, resident.token())) == 200
    assert await choices_of(runtime, USER) == {"areas": [], "topics": [], "language": "ja"}
    welcome = resident.last_reply()
    assert "練馬区のお知らせへようこそ" in welcome[0]["text"]
    labels = [i["action"]["label"] for i in welcome[1]["quickReply"]["items"]]
    assert labels == ["日本語", "やさしい日本語", "English", "中文", "한국어"]

    await resident.send(postback(USER, resident.token(), resident.choice("日本語")))
    labels = [i["action"]["label"] for i in resident.last_reply()[0]["quickReply"]["items"]]
    assert labels == ["練馬", "光が丘", "石神井", "大泉", "すべての地域"]
    await resident.send(postback(USER, resident.token(), resident.choice("大泉")))
    assert "地域を「大泉」にしました" in resident.last_reply()[0]["text"]
    await resident.send(postback(USER, resident.token(), resident.choice("ごみ・リサイクル")))
    await resident.send(postback(USER, resident.token(), resident.choice("防災")))
    assert "防災を追加しました" in resident.last_reply()[0]["text"]
    await resident.send(postback(USER, resident.token(), resident.choice("✓防災")))  # off again
    assert "防災を外しました" in resident.last_reply()[0]["text"]
    await resident.send(postback(USER, resident.token(), resident.choice("完了")))
    saved = resident.last_reply()
    assert "設定を保存しました" in saved[0]["text"]
    assert saved[1]["type"] == "flex"  # the button that opens the settings again
    assert await choices_of(runtime, USER) == {
        "areas": ["oizumi"],
        "topics": ["garbage"],
        "language": "ja",
    }

    # 設定 at any time, then a language
    await resident.send(text_message(USER, resident.token(), "設定"))
    assert "地域：大泉" in resident.last_reply()[0]["text"]
    await resident.send(postback(USER, resident.token(), resident.choice("言語 / Language")))
    await resident.send(postback(USER, resident.token(), resident.choice("English")))
    assert (await choices_of(runtime, USER) or {})["language"] == "en"

    # notices: 大泉's garbage news arrives; 練馬's does not
    for areas in (["oizumi"], ["nerima"]):
        notice = intake.validate(announcement(areas=areas, channels=["line"]), runtime.settings)
        await intake.enqueue(runtime.notices, notice)

        async def done(notice_id: str | None = notice.id) -> bool:
            found = await runtime.notices.get(str(notice_id))
            return bool(found and found["status"] == "done")

        await wait_for(done)
    assert len(fake_line.messages_for(USER)) == 1

    await resident.send(unfollow(USER))
    assert await runtime.subscribers.find("line", USER) is None
    assert await subscriber_counts(runtime) == {"line": 0, "email": 0, "print": 0}


async def test_every_reply_is_one_line_would_take(resident: Resident, fake_line: FakeLine) -> None:
    """The fake validates reply bodies against LINE's OpenAPI document and limits."""
    await resident.send(follow(USER, resident.token()))
    await resident.send(postback(USER, resident.token(), "do=menu&v=topic"))
    await resident.send(postback(USER, resident.token(), "do=menu&v=lang"))
    await resident.send(text_message(USER, resident.token(), "こんにちは"))
    assert "お問い合わせ" in resident.last_reply()[0]["text"]
    await resident.send(postback(USER, resident.token(), "do=done"))  # a Flex button too
    assert [status for path, status in fake_line.responses if "reply" in path] == [200] * 5


async def test_an_english_resident_is_answered_in_english_even_for_a_sticker(
    resident: Resident, runtime: Runtime
) -> None:
    await resident.send(follow(USER, resident.token()))
    await resident.send(postback(USER, resident.token(), resident.choice("English")))
    assert (await choices_of(runtime, USER) or {})["language"] == "en"
    assert resident.last_reply()[0]["text"].startswith("Choose the area where you live.")
    await resident.send(sticker_message(USER, resident.token()))
    (answer,) = resident.last_reply()
    assert "This account sends notices from Nerima City." in answer["text"]
    assert [i["action"]["label"] for i in answer["quickReply"]["items"]] == ["Settings"]


@pytest.mark.parametrize("secret", ["not-the-secret", ""])
async def test_a_bad_signature_is_refused_and_changes_nothing(
    resident: Resident, runtime: Runtime, fake_line: FakeLine, secret: str
) -> None:
    if secret:
        assert await resident.send(follow(USER, resident.token()), secret=secret) == 401
    else:
        body, _ = body_and_headers(LINE_SECRET, payload(follow(USER, resident.token())))
        async with resident.session.post(resident.url, data=body) as response:
            assert response.status == 400
    assert await runtime.subscribers.find("line", USER) is None
    assert fake_line.replies == []


async def test_a_malformed_event_is_skipped_and_the_others_of_its_delivery_are_handled(
    resident: Resident, runtime: Runtime, fake_line: FakeLine
) -> None:
    other = "U" + "8" * 32
    bad_id = follow("U" + "8" * 31 + "Z", resident.token())  # not U and 32 lowercase hex
    no_event_id = {**follow(other, resident.token()), "webhookEventId": "a b"}
    broken = {"type": "follow"}  # no source, no timestamp …
    assert await resident.send(bad_id, 42, broken, no_event_id, {"type": "futureEvent"},
                               follow(USER, resident.token())) == 200  # fmt: skip
    assert await choices_of(runtime, USER) == {"areas": [], "topics": [], "language": "ja"}
    assert await runtime.subscribers.find("line", other) is None
    assert len(fake_line.replies) == 1  # the good follow's welcome, and nothing else


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 5000 + b"]" * 5000, "bad_payload"),
        (b'{"destination": "x", "events": {"type": "follow"}}', "bad_payload"),
        (b'["events"]', "bad_payload"),
        (b"\xff\xfe", "bad_signature"),  # the SDK signs text: bytes not UTF-8 never match
    ],
)
async def test_a_signed_body_that_is_no_webhook_payload_is_refused_cleanly(
    resident: Resident, runtime: Runtime, body: bytes, code: str
) -> None:
    headers = {"X-Line-Signature": sign(LINE_SECRET, body), "Content-Type": "application/json"}
    async with resident.session.post(resident.url, data=body, headers=headers) as response:
        assert response.status == (400 if code == "bad_payload" else 401)
        assert (await response.json())["error"]["code"] == code


async def test_an_odd_signature_header_is_a_401_not_a_fault(resident: Resident) -> None:
    body, _ = body_and_headers(LINE_SECRET, payload(follow(USER, resident.token())))
    headers = {"X-Line-Signature": "é" * 44}
    async with resident.session.post(resident.url, data=body, headers=headers) as response:
        assert response.status == 401


async def test_an_empty_event_list_is_lines_connection_check(resident: Resident) -> None:
    assert await resident.send() == 200


async def test_a_redelivered_event_is_handled_once(
    resident: Resident, runtime: Runtime, fake_line: FakeLine
) -> None:
    await resident.send(follow(USER, resident.token()))
    event = postback(USER, resident.token(), "do=topic&v=garbage")
    again = {**event, "deliveryContext": {"isRedelivery": True}}
    assert await resident.send(event) == 200
    assert await resident.send(again) == 200
    assert (await choices_of(runtime, USER) or {})["topics"] == ["garbage"]  # not toggled off
    assert len(fake_line.replies) == 2


async def test_standby_and_stale_events_change_data_but_get_no_reply(
    resident: Resident, runtime: Runtime, fake_line: FakeLine
) -> None:
    await resident.send(follow(USER, resident.token(), mode="standby"))
    assert await runtime.subscribers.find("line", USER) is not None
    old = int(time.time() * 1000) - 120_000
    await resident.send(postback(USER, resident.token(), "do=area&v=nerima", timestamp=old))
    assert (await choices_of(runtime, USER) or {})["areas"] == ["nerima"]
    assert fake_line.replies == []


async def test_unknown_postbacks_change_nothing(resident: Resident, runtime: Runtime) -> None:
    await resident.send(follow(USER, resident.token()))
    for data in ("do=area&v=shibuya", "do=lang&v=fr", "garbage", "do=topic&v="):
        await resident.send(postback(USER, resident.token(), data))
    assert await choices_of(runtime, USER) == {"areas": [], "topics": [], "language": "ja"}
    assert dict(parse_qsl("do=area&v=all"))["v"] == "all"


async def test_without_line_credentials_the_webhook_is_503(
    tmp_path: Path, prefix: str, runtime: Runtime
) -> None:
    service = Service(make_settings(tmp_path, prefix), parts=["api"])
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            body, headers = body_and_headers(LINE_SECRET, payload())
            url = f"http://127.0.0.1:{service.port}/line/webhook"
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 503
    finally:
        await service.stop()
