"""The fake LINE server, driven by the real line-bot-sdk, and the webhook payload builders."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    MulticastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    FollowEvent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
)

from tests import fake_line
from tests.fake_line import AUTH_FAILED, FakeLine, utf16_len
from tests.line_events import (
    body_and_headers,
    follow,
    payload,
    postback,
    sign,
    text_message,
    unfollow,
)
from tests.line_spec import errors

TOKEN = "test-channel-token"
SECRET = "test-channel-secret"
MULTICAST = "/v2/bot/message/multicast"
ALICE, BOB = "U" + "a" * 32, "U" + "b" * 32


def user(n: int) -> str:
    return f"U{n:032x}"


def is_uuid(value: str | None) -> bool:
    return value is not None and str(uuid.UUID(value)) == value


def text_request(text: str = "燃えるごみの収集日が変わります", to: list[str] | None = None) -> Any:
    return MulticastRequest(to=to or [ALICE, BOB], messages=[TextMessage(text=text)])


def line_error(caught: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(caught.value.body)
    return body


@asynccontextmanager
async def sdk(fake: FakeLine, token: str = TOKEN) -> AsyncIterator[AsyncMessagingApi]:
    """The real SDK client, pointed at the fake."""
    client = AsyncApiClient(Configuration(host=fake.url, access_token=token))
    try:
        api = AsyncMessagingApi(client)
        api.line_base_path = fake.url  # the SDK hard-codes https://api.line.me here
        yield api
    finally:
        await client.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeLine]:
    async with FakeLine(token=TOKEN) as line:
        yield line


@pytest.fixture
async def api(fake: FakeLine) -> AsyncIterator[AsyncMessagingApi]:
    async with sdk(fake) as client:
        yield client


async def post_raw(
    fake: FakeLine, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST without the SDK (which refuses some invalid bodies itself)."""
    sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
        async with session.post(fake.url + path, data=data, headers=sent) as response:
            return response.status, await response.json(), dict(response.headers)


# -- multicast ---------------------------------------------------------------------------


async def test_an_accepted_multicast_reaches_every_user(
    fake: FakeLine, api: AsyncMessagingApi
) -> None:
    key = str(uuid.uuid4())
    response = await api.multicast_with_http_info(text_request(), x_line_retry_key=key)

    assert response.status_code == 200 and response.data == {}
    request_id = response.headers["x-line-request-id"]
    assert is_uuid(request_id)
    expected = [{"type": "text", "text": "燃えるごみの収集日が変わります"}]
    assert fake.messages_for(ALICE) == expected and fake.messages_for(BOB) == expected
    assert fake.messages_for(user(3)) == []
    (accepted,) = fake.multicasts
    assert accepted["request_id"] == request_id and accepted["retry_key"] == key
    assert accepted["to"] == [ALICE, BOB] and accepted["messages"] == expected
    assert fake.responses == [(MULTICAST, 200)]


async def test_a_retry_with_an_accepted_key_is_refused_and_delivers_nothing(
    fake: FakeLine, api: AsyncMessagingApi
) -> None:
    key = str(uuid.uuid4())
    first = await api.multicast_with_http_info(text_request(), x_line_retry_key=key)

    with pytest.raises(ApiException) as caught:
        await api.multicast_with_http_info(text_request(), x_line_retry_key=key)

    assert caught.value.status == 409
    assert line_error(caught) == {"message": "The retry key is already accepted"}
    accepted_id = caught.value.headers["x-line-accepted-request-id"]
    assert accepted_id == first.headers["x-line-request-id"]
    assert caught.value.headers["x-line-request-id"] != accepted_id
    assert len(fake.messages_for(ALICE)) == 1 and len(fake.multicasts) == 1
    # another key is another request
    await api.multicast_with_http_info(text_request(), x_line_retry_key=str(uuid.uuid4()))
    assert len(fake.messages_for(ALICE)) == 2


async def test_a_retry_key_must_be_a_uuid(fake: FakeLine, api: AsyncMessagingApi) -> None:
    with pytest.raises(ApiException) as caught:
        await api.multicast_with_http_info(text_request(), x_line_retry_key="not-a-uuid")
    assert caught.value.status == 400
    assert line_error(caught) == {
        "message": "The value for the 'X-Line-Retry-Key' header is invalid"
    }
    assert fake.delivered == {}


async def test_a_wrong_channel_token_is_refused(fake: FakeLine) -> None:
    async with sdk(fake, token="someone-elses-token") as api:
        with pytest.raises(ApiException) as caught:
            await api.multicast_with_http_info(text_request())
    assert caught.value.status == 401
    assert line_error(caught) == {"message": AUTH_FAILED}
    assert is_uuid(caught.value.headers["x-line-request-id"])
    assert fake.delivered == {}


async def test_a_body_that_breaks_lines_schema_gets_lines_400(fake: FakeLine) -> None:
    status, body, headers = await post_raw(
        fake, MULTICAST, {"to": [ALICE], "messages": [{"type": "text"}]}
    )
    assert status == 400
    assert body == {
        "message": "The request body has 1 error(s)",
        "details": [{"message": "must be specified", "property": "messages[0].text"}],
    }
    assert is_uuid(headers["x-line-request-id"])
    assert fake.delivered == {} and fake.multicasts == []


async def test_a_body_that_is_not_json_gets_400(fake: FakeLine) -> None:
    status, body, _ = await post_raw(fake, MULTICAST, b'{"to": [')
    assert status == 400
    assert body["message"].startswith("The request body could not be parsed as JSON")


async def test_text_is_limited_to_5000_utf16_units(fake: FakeLine, api: AsyncMessagingApi) -> None:
    fits = "🌸" * 2500  # 2500 characters, 5000 UTF-16 units
    assert utf16_len(fits) == 5000
    await api.multicast_with_http_info(text_request(fits))

    with pytest.raises(ApiException) as caught:
        await api.multicast_with_http_info(text_request(fits + "a"))

    assert caught.value.status == 400
    assert line_error(caught) == {
        "message": "The request body has 1 error(s)",
        "details": [
            {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}
        ],
    }
    assert fake.messages_for(ALICE) == [{"type": "text", "text": fits}]


def bubble(text: str) -> dict[str, Any]:
    box = {"type": "box", "layout": "vertical", "contents": [{"type": "text", "text": text}]}
    return {"type": "bubble", "body": box}


def quick_reply(*actions: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"type": "action", "action": action} for action in actions]}


TEXT = {"type": "text", "text": "お知らせ"}
POSTBACK = {"type": "postback", "label": "ごみ", "data": "topic=garbage"}


@pytest.mark.parametrize(
    ("to", "messages", "problem"),
    [
        pytest.param([user(i) for i in range(501)], [TEXT], "to", id="501-users"),
        pytest.param([], [TEXT], "to", id="no-users"),
        pytest.param([ALICE, BOB, ALICE], [TEXT], "to[2]", id="duplicate-user"),
        pytest.param([ALICE, "Cdeadbeef"], [TEXT], "to[1]", id="not-a-user-id"),
        pytest.param([ALICE], [TEXT] * 6, "messages", id="6-messages"),
        pytest.param([ALICE], [{"type": "text", "text": ""}], "messages[0].text", id="empty-text"),
        pytest.param(
            [ALICE],
            [{"type": "flex", "altText": "あ" * 1501, "contents": bubble("x")}],
            "messages[0].altText",
            id="alt-text-1501",
        ),
        pytest.param(
            [ALICE],
            [{"type": "flex", "altText": "a", "contents": bubble("あ" * 10_000)}],
            "messages[0].contents",
            id="bubble-over-30kb",
        ),
        pytest.param(
            [ALICE],
            [{**TEXT, "quickReply": quick_reply(*[POSTBACK] * 14)}],
            "messages[0].quickReply.items",
            id="14-quick-replies",
        ),
        pytest.param(
            [ALICE],
            [{**TEXT, "quickReply": quick_reply({**POSTBACK, "label": "あ" * 21})}],
            "messages[0].quickReply.items[0].action.label",
            id="label-21",
        ),
        pytest.param(
            [ALICE],
            [{**TEXT, "quickReply": quick_reply({**POSTBACK, "data": "d" * 301})}],
            "messages[0].quickReply.items[0].action.data",
            id="postback-data-301",
        ),
    ],
)
async def test_lines_limits_are_enforced(
    fake: FakeLine, to: list[str], messages: list[dict[str, Any]], problem: str
) -> None:
    status, body, _ = await post_raw(fake, MULTICAST, {"to": to, "messages": messages})
    assert status == 400
    assert body["message"] == "The request body has 1 error(s)"
    (detail,) = body["details"]
    assert detail["property"] == problem
    assert "U000" not in detail["message"] and ALICE not in detail["message"]  # no ids echoed
    assert fake.delivered == {}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"to": [ALICE], "messages": [{"type": "text"}]}, "messages[0].text"),
        ({"to": [ALICE, 7], "messages": [TEXT]}, "to"),
        ({"to": [ALICE]}, "messages"),
        ({"to": [ALICE], "messages": [{"type": "flex", "altText": "a"}]}, "messages[0].contents"),
        ({"to": [ALICE, ALICE], "messages": [TEXT]}, "to[1]"),
    ],
)
async def test_a_body_not_sampled_for_the_schema_still_has_its_shape_checked(
    body: dict[str, Any], problem: str
) -> None:
    async with FakeLine(token=TOKEN, schema_sample=100) as fake:
        await post_raw(fake, MULTICAST, {"to": [ALICE], "messages": [TEXT]})  # the sampled one
        status, answer, _ = await post_raw(fake, MULTICAST, body)
        assert status == 400
        assert [d["property"] for d in answer["details"]] == [problem]
        assert len(fake.multicasts) == 1 and fake.messages_for(ALICE) == [TEXT]


async def test_what_fits_lines_limits_is_accepted(fake: FakeLine) -> None:
    fits = {
        "to": [user(i) for i in range(500)],
        "messages": [
            {"type": "flex", "altText": "あ" * 1500, "contents": bubble("x")},
            {**TEXT, "quickReply": quick_reply(*[{**POSTBACK, "label": "あ" * 20}] * 13)},
        ],
    }
    status, body, _ = await post_raw(fake, MULTICAST, fits)
    assert (status, body) == (200, {})
    assert len(fake.delivered) == 500


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        (500, 500, "Internal server error"),
        (502, 502, "Internal server error"),
        (503, 503, "Internal server error"),
        (504, 504, "Internal server error"),
        (429, 429, "Too many requests"),
        ("monthly", 429, "You have reached your monthly limit."),
        (400, 400, "The request body has 1 error(s)"),
        (401, 401, AUTH_FAILED),
        (403, 403, "Access to this API is not available for your account"),
    ],
)
async def test_a_fault_answers_like_line_and_accepts_nothing(
    fake: FakeLine, api: AsyncMessagingApi, fault: int | str, status: int, message: str
) -> None:
    fake.fail(fault)
    key = str(uuid.uuid4())
    with pytest.raises(ApiException) as caught:
        await api.multicast_with_http_info(text_request(), x_line_retry_key=key)

    assert caught.value.status == status
    assert line_error(caught)["message"] == message
    assert is_uuid(caught.value.headers["x-line-request-id"])
    assert fake.delivered == {} and fake.multicasts == []
    # the fault is spent, and the key was never accepted: the retry goes through
    response = await api.multicast_with_http_info(text_request(), x_line_retry_key=key)
    assert response.status_code == 200
    assert len(fake.messages_for(ALICE)) == 1
    assert fake.responses == [(MULTICAST, status), (MULTICAST, 200)]


async def test_faults_apply_in_order_one_per_request(
    fake: FakeLine, api: AsyncMessagingApi
) -> None:
    fake.fail(503, 429)
    statuses = []
    for _ in range(3):
        try:
            statuses.append((await api.multicast_with_http_info(text_request())).status_code)
        except ApiException as e:
            statuses.append(e.status)
    assert statuses == [503, 429, 200]


def test_unknown_faults_are_refused() -> None:
    fake = FakeLine()
    for fault in (418, "slow", True):
        with pytest.raises(ValueError, match="unknown fault"):
            fake.fail(fault)


async def test_the_monthly_limit_refuses_every_multicast(
    fake: FakeLine, api: AsyncMessagingApi
) -> None:
    fake.monthly_limit = True
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            await api.multicast_with_http_info(text_request())
        assert caught.value.status == 429
        assert line_error(caught) == {"message": "You have reached your monthly limit."}
    fake.monthly_limit = False
    await api.multicast_with_http_info(text_request())
    assert len(fake.messages_for(ALICE)) == 1


async def test_a_lost_answer_times_out_yet_line_delivered_and_keeps_the_key(
    fake: FakeLine, api: AsyncMessagingApi
) -> None:
    fake.fail("timeout")
    key = str(uuid.uuid4())
    # the SDK lets aiohttp's timeout through: a plain TimeoutError, not an ApiException
    with pytest.raises(TimeoutError):
        await api.multicast_with_http_info(
            text_request(), x_line_retry_key=key, _request_timeout=0.5
        )

    (accepted,) = fake.multicasts
    assert len(fake.messages_for(ALICE)) == 1 and len(fake.messages_for(BOB)) == 1
    with pytest.raises(ApiException) as caught:
        await api.multicast_with_http_info(text_request(), x_line_retry_key=key)
    assert caught.value.status == 409
    assert caught.value.headers["x-line-accepted-request-id"] == accepted["request_id"]
    assert len(fake.messages_for(ALICE)) == 1 and len(fake.multicasts) == 1


async def test_a_hang_times_out_and_accepts_nothing(fake: FakeLine, api: AsyncMessagingApi) -> None:
    fake.fail("hang")
    key = str(uuid.uuid4())
    with pytest.raises(TimeoutError):
        await api.multicast_with_http_info(
            text_request(), x_line_retry_key=key, _request_timeout=0.3
        )

    assert fake.delivered == {} and fake.multicasts == []
    await api.multicast_with_http_info(text_request(), x_line_retry_key=key)
    assert len(fake.messages_for(ALICE)) == 1


async def test_stopping_ends_a_fault_sleep_at_once() -> None:
    fake = FakeLine()
    await fake.start()
    fake.fail("hang")
    async with sdk(fake) as api:
        waiting = asyncio.ensure_future(api.multicast_with_http_info(text_request()))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(ApiException) as caught:
            await waiting
    assert caught.value.status == 500
    assert fake.delivered == {}
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_the_rate_limit_refuses_a_burst_beyond_the_bucket() -> None:
    rate = 2
    async with FakeLine(rate=rate) as fake, sdk(fake) as api:
        calls = [api.multicast_with_http_info(text_request()) for _ in range(rate + 5)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, ApiException)]
        assert len(refused) == 5 and fake.refused["/v2/bot/message/multicast"] == 5
        assert all(r.status == 429 for r in refused)
        assert {json.loads(r.body)["message"] for r in refused} == {"Too many requests"}
        assert len(fake.multicasts) == len(results) - len(refused)
        assert len(fake.messages_for(ALICE)) == len(fake.multicasts)

        await asyncio.sleep(1.05)  # the first requests have left the trailing second
        response = await api.multicast_with_http_info(text_request())
        assert response.status_code == 200


async def test_lines_published_limits_hold_by_default_over_a_trailing_window() -> None:
    """200 multicasts in any second, as LINE's table says, not a bucket's burst on top; the
    other endpoints keep their own counts (a reply is not held by the multicasts)."""
    async with FakeLine() as fake, sdk(fake) as api:
        started = time.monotonic()
        calls = [api.multicast_with_http_info(text_request()) for _ in range(230)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        took = time.monotonic() - started
        refused = [r for r in results if isinstance(r, ApiException)]
        if took < 1.0:  # all of them inside one second: exactly the limit got through
            assert len(fake.multicasts) == 200 and len(refused) == 30
        assert all(r.status == 429 for r in refused)
        assert fake.refused["/v2/bot/message/multicast"] == len(refused) > 0
        assert max(window_count(fake.multicasts)) <= 200
        token = fake.issue_reply_token()
        reply = ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="はい")])
        assert (await api.reply_message_with_http_info(reply)).status_code == 200


def window_count(accepted: list[dict[str, Any]], seconds: float = 1.0) -> list[int]:
    """For each accepted request, how many were accepted in the second before it."""
    times = sorted(r["at"] for r in accepted)
    return [sum(1 for u in times if t - seconds < u <= t) for t in times]


async def test_a_response_delay_holds_each_accepted_answer() -> None:
    async with FakeLine(response_delay=0.2) as fake, sdk(fake) as api:
        started = time.monotonic()
        await api.multicast_with_http_info(text_request())
        assert time.monotonic() - started >= 0.2
        assert fake.multicasts[0]["at"] - started < 0.2  # accepted before the answer left


# -- push, reply, the rest ---------------------------------------------------------------


async def test_push_delivers_and_honours_the_retry_key(
    fake: FakeLine, api: AsyncMessagingApi
) -> None:
    key = str(uuid.uuid4())
    request = PushMessageRequest(to=ALICE, messages=[TextMessage(text="断水のお知らせ")])
    response = await api.push_message_with_http_info(request, x_line_retry_key=key)

    assert response.status_code == 200
    (sent,) = response.data.sent_messages
    assert sent.id.isdigit() and sent.quote_token
    assert fake.messages_for(ALICE) == [{"type": "text", "text": "断水のお知らせ"}]
    assert fake.pushes[0]["to"] == ALICE
    with pytest.raises(ApiException) as caught:
        await api.push_message_with_http_info(request, x_line_retry_key=key)
    assert caught.value.status == 409
    assert (
        caught.value.headers["x-line-accepted-request-id"] == response.headers["x-line-request-id"]
    )
    assert len(fake.messages_for(ALICE)) == 1


async def test_a_reply_token_works_once(fake: FakeLine, api: AsyncMessagingApi) -> None:
    token = fake.issue_reply_token()
    request = ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="ようこそ")])
    response = await api.reply_message_with_http_info(request)

    assert response.status_code == 200 and len(response.data.sent_messages) == 1
    (reply,) = fake.replies
    assert reply["reply_token"] == token
    assert reply["messages"] == [{"type": "text", "text": "ようこそ"}]
    assert reply["request_id"] == response.headers["x-line-request-id"]
    for used_or_unknown in (token, "0" * 32):
        request.reply_token = used_or_unknown
        with pytest.raises(ApiException) as caught:
            await api.reply_message_with_http_info(request)
        assert caught.value.status == 400
        assert line_error(caught) == {"message": "Invalid reply token"}
    assert len(fake.replies) == 1 and fake.delivered == {}


async def test_a_reply_token_expires(
    fake: FakeLine, api: AsyncMessagingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_line, "REPLY_TOKEN_TTL", 0.05)
    token = fake.issue_reply_token()
    await asyncio.sleep(0.1)
    request = ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="遅い")])
    with pytest.raises(ApiException) as caught:
        await api.reply_message_with_http_info(request)
    assert caught.value.status == 400 and fake.replies == []


async def test_unknown_paths_are_404(fake: FakeLine) -> None:
    status, body, headers = await post_raw(fake, "/v2/bot/message/nowhere", {})
    assert (status, body) == (404, {"message": "Not found"})
    assert is_uuid(headers["x-line-request-id"])
    assert fake.responses == [("/v2/bot/message/nowhere", 404)]


async def test_the_fake_logs_no_user_ids(
    fake: FakeLine, api: AsyncMessagingApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    await api.multicast_with_http_info(text_request())
    await post_raw(fake, MULTICAST, {"to": [ALICE] * 501, "messages": [TEXT]})
    assert ALICE not in caplog.text and BOB not in caplog.text


# -- webhook payloads --------------------------------------------------------------------


def test_webhook_payloads_match_lines_schema_and_parse_with_the_sdk() -> None:
    token = "r" * 32
    events = [
        follow(ALICE, token),
        unfollow(ALICE),
        postback(ALICE, token, "action=subscribe&topic=garbage"),
        text_message(ALICE, token, "ごみの日は？"),
    ]
    body = payload(*events)
    assert errors(body, "CallbackRequest", spec="webhook.yml") == []

    raw, headers = body_and_headers(SECRET, body)
    assert headers["Content-Type"].startswith("application/json")
    parsed = WebhookParser(SECRET).parse(raw.decode("utf-8"), headers["X-Line-Signature"])

    assert [type(e) for e in parsed] == [FollowEvent, UnfollowEvent, PostbackEvent, MessageEvent]
    followed, unfollowed, tapped, said = parsed
    assert followed.reply_token == token and followed.source.user_id == ALICE
    assert followed.follow.is_unblocked is False
    assert unfollowed.source.user_id == ALICE and "replyToken" not in events[1]
    assert tapped.postback.data == "action=subscribe&topic=garbage"
    assert isinstance(said.message, TextMessageContent) and said.message.text == "ごみの日は？"
    for event in parsed:
        assert event.mode == "active" and event.delivery_context.is_redelivery is False
    ids = [e["webhookEventId"] for e in events]
    assert len(set(ids)) == 4 and all(len(i) == 26 for i in ids)


def test_webhook_overrides() -> None:
    event = follow(
        BOB,
        "t" * 32,
        mode="standby",
        timestamp=1_700_000_000_000,
        webhookEventId="01HZZZZZZZZZZZZZZZZZZZZZZZ",
        deliveryContext={"isRedelivery": True},
    )
    body = payload(event, destination=user(9))
    assert errors(body, "CallbackRequest", spec="webhook.yml") == []
    raw, headers = body_and_headers(SECRET, body)
    (parsed,) = WebhookParser(SECRET).parse(raw.decode("utf-8"), headers["X-Line-Signature"])
    assert parsed.mode == "standby" and parsed.timestamp == 1_700_000_000_000
    assert parsed.webhook_event_id == "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    assert parsed.delivery_context.is_redelivery is True
    assert json.loads(raw)["destination"] == user(9)
    # LINE's connection check: no events at all
    assert errors(payload(), "CallbackRequest", spec="webhook.yml") == []


def test_a_signature_under_another_secret_is_refused() -> None:
    raw, headers = body_and_headers(SECRET, payload(unfollow(ALICE)))
    with pytest.raises(InvalidSignatureError):
        WebhookParser("another-secret").parse(raw.decode("utf-8"), headers["X-Line-Signature"])
    tampered = raw.replace(ALICE.encode(), BOB.encode())
    with pytest.raises(InvalidSignatureError):
        WebhookParser(SECRET).parse(tampered.decode("utf-8"), headers["X-Line-Signature"])
    assert sign(SECRET, tampered) != headers["X-Line-Signature"]
