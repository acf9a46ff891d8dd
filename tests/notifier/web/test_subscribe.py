"""Email end to end with a real SMTP server: subscribe, confirm, receive, leave with one click."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import (
    channel_progress,
    delivering,
    email_settings,
    enqueued,
    finished,
    subscriber_counts,
    wait_for,
    whole_ward_notice,
)
from tests.smtp_sink import SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, prefix: str, sink: SmtpSink) -> Settings:
    return email_settings(tmp_path, prefix, sink.port)


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    service = Service(settings)
    await service.start()
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{service.port}"
    await service.stop()


async def post_notice(runtime: Runtime, **fields: Any) -> dict[str, Any]:
    return await finished(runtime, await enqueued(runtime, channels=["email"], **fields))


def link_in(message: Any, pattern: str) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.search(pattern, text)
    assert found, text
    return found[0]


async def test_subscribe_confirm_receive_and_leave_with_one_click(
    web: tuple[aiohttp.ClientSession, str], runtime: Runtime, sink: SmtpSink, settings: Settings
) -> None:
    session, base = web
    async with session.get(base + "/subscribe") as response:
        form = await response.text()
    assert response.status == 200 and '<label for="address">' in form and "大泉" in form
    address = "hanako@example.jp"
    data = {"address": address, "areas": "oizumi", "topics": "garbage", "language": "ja"}
    async with session.post(base + "/subscribe", data=data) as response:
        assert response.status == 200 and "確認メールを送りました" in await response.text()
    assert await runtime.subscribers.find("email", address) is None  # not before confirming
    (confirmation,) = sink.messages_to(address)
    assert "登録の確認" in confirmation["Subject"]
    url = link_in(confirmation, r"https://\S+/subscribe/confirm/\S+")
    path = url.removeprefix(settings.public_url)
    async with session.get(base + path) as response:
        assert response.status == 200 and "登録が完了しました" in await response.text()
    async with session.get(base + path) as response:  # a confirmation link works once
        assert response.status == 200 and "すでに登録されています" in await response.text()
    assert (await subscriber_counts(runtime))["email"] == 1

    result = await post_notice(runtime, areas=["oizumi"], url="https://www.city.nerima.tokyo.jp/")
    assert result["progress"]["email"]["sent"] == 1
    notice_mail = sink.messages_to(address)[-1]
    assert notice_mail["Subject"] == "【練馬区】粗大ごみの収集日が変わります"
    assert notice_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.search(r"<(https://[^>]+)>", notice_mail["List-Unsubscribe"])
    assert unsubscribe
    path = unsubscribe[1].removeprefix(settings.public_url)

    async with session.get(base + path) as response:  # a link scanner's GET changes nothing
        assert response.status == 200 and "配信を停止する" in await response.text()
    assert await runtime.subscribers.find("email", address) is not None
    async with session.post(
        base + path,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert response.status == 200 and "配信を停止しました" in await response.text()
    assert await runtime.subscribers.find("email", address) is None
    before = len(sink.messages())
    await post_notice(runtime, areas=["oizumi"], title="次のお知らせ")
    assert len(sink.messages()) == before


async def test_bad_input_is_shown_beside_the_field_in_japanese(
    web: tuple[aiohttp.ClientSession, str], sink: SmtpSink
) -> None:
    session, base = web
    data = {"address": "not-an-address", "areas": "shibuya"}
    async with session.post(base + "/subscribe", data=data) as response:
        page = await response.text()
    assert response.status == 400
    assert "メールアドレスを確かめてください" in page and "地域は一覧から選んでください" in page
    assert 'aria-invalid="true"' in page
    assert sink.messages() == []


async def test_the_form_cannot_be_used_to_flood_an_address(
    web: tuple[aiohttp.ClientSession, str], sink: SmtpSink
) -> None:
    session, base = web
    statuses = []
    for _ in range(5):
        async with session.post(base + "/subscribe", data={"address": "victim@example.jp"}) as r:
            statuses.append(r.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert len(sink.messages_to("victim@example.jp")) == 3


async def test_an_expired_confirmation_link_is_refused(
    web: tuple[aiohttp.ClientSession, str], runtime: Runtime, sink: SmtpSink, settings: Settings
) -> None:
    session, base = web
    async with session.post(base + "/subscribe", data={"address": "taro@example.jp"}):
        pass
    url = link_in(sink.messages_to("taro@example.jp")[0], r"https://\S+/subscribe/confirm/\S+")
    token = url.rsplit("/", 1)[1]
    await runtime.redis.delete(runtime.keys.confirmation(token))  # as 48 hours would
    async with session.get(base + url.removeprefix(settings.public_url)) as response:
        assert response.status == 404 and "期限が切れた" in await response.text()
    assert await runtime.subscribers.find("email", "taro@example.jp") is None


async def test_resubscribing_updates_choices_rather_than_doubling(
    web: tuple[aiohttp.ClientSession, str], runtime: Runtime, sink: SmtpSink, settings: Settings
) -> None:
    session, base = web
    for areas in ("nerima", "oizumi"):
        async with session.post(
            base + "/subscribe", data={"address": "a@example.jp", "areas": areas}
        ):
            pass
        url = link_in(sink.messages_to("a@example.jp")[-1], r"https://\S+/subscribe/confirm/\S+")
        async with session.get(base + url.removeprefix(settings.public_url)):
            pass
    assert (await subscriber_counts(runtime))["email"] == 1
    sid = await runtime.subscribers.find("email", "a@example.jp")
    sub = await runtime.subscribers.get(str(sid))
    assert sub is not None and sub.areas == ["oizumi"]


async def subscribed(runtime: Runtime, addresses: list[str]) -> None:
    store = runtime.subscribers
    await store.save([store.validate({"channel": "email", "address": a}) for a in addresses])


async def test_an_unknown_mailbox_fails_alone_and_is_suspended_after_repeated_bounces(
    tmp_path: Path, prefix: str, sink: SmtpSink, runtime: Runtime
) -> None:
    settings = email_settings(tmp_path, prefix, sink.port, email_hard_bounces=2)
    async with delivering(settings, "email"):
        people = [f"r{i}@example.jp" for i in range(6)]
        await subscribed(runtime, people)
        sink.reject["r3@example.jp"] = 550
        first = await post_notice(runtime, areas=[])
        assert first["progress"]["email"] == channel_progress(6, failed=1)
        assert {m["To"] for m in sink.messages()} == set(people) - {"r3@example.jp"}
        second = await post_notice(runtime, areas=[], title="二通目")
        assert second["progress"]["email"]["failed"] == 1
        third = await post_notice(runtime, areas=[], title="三通目")  # suspended: not tried
        assert third["progress"]["email"] == channel_progress(5)


async def test_smtp_down_for_a_while_then_back_delivers_everything_once(
    tmp_path: Path, prefix: str, sink: SmtpSink, runtime: Runtime
) -> None:
    settings = email_settings(tmp_path, prefix, sink.port, email_batch_size=3)
    people = [f"p{i}@example.jp" for i in range(9)]
    await subscribed(runtime, people)
    sink.go_down()
    async with delivering(settings, "email"):
        notice_id = await whole_ward_notice(runtime, settings, "email")

        async def retrying() -> bool:
            return await runtime.redis.zcard(runtime.keys.retries) > 0

        await wait_for(retrying)
        sink.come_back()
        result = await finished(runtime, notice_id)
    assert result["progress"]["email"]["sent"] == 9
    assert sorted(m["To"] for m in sink.messages()) == sorted(people)  # each once


async def test_one_client_cannot_ask_for_more_than_ten_an_hour(
    web: tuple[aiohttp.ClientSession, str], sink: SmtpSink
) -> None:
    session, base = web
    statuses = []
    for i in range(12):
        async with session.post(base + "/subscribe", data={"address": f"n{i}@example.jp"}) as r:
            statuses.append(r.status)
    assert statuses == [200] * 10 + [429, 429]
    assert len(sink.messages()) == 10


async def test_a_busy_mailbox_is_tried_again_and_gets_its_mail_once(
    tmp_path: Path, prefix: str, sink: SmtpSink, runtime: Runtime
) -> None:
    settings = email_settings(tmp_path, prefix, sink.port)
    people = [f"b{i}@example.jp" for i in range(4)]
    await subscribed(runtime, people)
    sink.reject["b2@example.jp"] = 450  # "4.2.1 Mailbox busy": try later
    async with delivering(settings, "email"):
        notice_id = await whole_ward_notice(runtime, settings, "email")

        async def others_reached() -> bool:
            return len(sink.messages()) == 3

        await wait_for(others_reached)
        del sink.reject["b2@example.jp"]
        result = await finished(runtime, notice_id)
    assert result["progress"]["email"] == channel_progress(4)
    assert sorted(m["To"] for m in sink.messages()) == sorted(people)  # each exactly once
