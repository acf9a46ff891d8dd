"""The fake X API, driven by tweepy's real async client over ``channels.x_session``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from oauthlib import oauth1  # type: ignore[import-untyped]
from tweepy.asynchronous import AsyncClient
from tweepy.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    TooManyRequests,
    TwitterServerError,
    Unauthorized,
)
from twitter_text import parse_tweet

from channels.x_session import x_session
from tests.fake_x import (
    DUPLICATE_CONTENT,
    GET_ME,
    INVALID_REQUEST_DETAIL,
    POST_TWEETS,
    REPLY_NOT_VISIBLE,
    X_ORIGIN,
    FakeX,
)

CREDENTIALS = {
    "consumer_key": "test-consumer-key",
    "consumer_secret": "test-consumer-secret",
    "access_token": "test-access-token",
    "access_token_secret": "test-access-secret",
}
RATE_HEADERS = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")


@pytest.fixture
async def fake() -> AsyncIterator[FakeX]:
    async with FakeX() as server:
        yield server


@asynccontextmanager
async def x_client(fake: FakeX, timeout: float = 10.0, **options: Any) -> AsyncIterator[Any]:
    """tweepy's AsyncClient on the project's X session, pointed at the fake."""
    credentials = {**CREDENTIALS, **options.pop("credentials", {})}
    client = AsyncClient(**credentials, **options)
    client.session = x_session(fake.url, timeout)
    try:
        yield client
    finally:
        await client.session.close()


@pytest.fixture
async def client(fake: FakeX) -> AsyncIterator[Any]:
    async with x_client(fake) as c:
        yield c


async def post(client: Any, text: str, reply_to: str | None = None) -> str:
    response = await client.create_tweet(text=text, in_reply_to_tweet_id=reply_to, user_auth=True)
    return str(response.data["id"])


# -- posting ----------------------------------------------------------------------------


async def test_a_post_is_accepted_and_recorded(fake: FakeX, client: Any) -> None:
    before = time.monotonic()
    response = await client.create_tweet(text="練馬区からのお知らせです。", user_auth=True)
    data = response.data
    assert data["text"] == "練馬区からのお知らせです。"
    assert data["id"].isdigit() and len(data["id"]) >= 18
    assert data["edit_history_tweet_ids"] == [data["id"]]
    [recorded] = fake.posts
    assert recorded.keys() == {"id", "text", "in_reply_to", "at"}
    assert recorded["id"] == data["id"]
    assert recorded["text"] == "練馬区からのお知らせです。"
    assert recorded["in_reply_to"] is None
    assert before <= recorded["at"] <= time.monotonic()
    assert fake.responses == [("POST", "/2/tweets", 201)]


async def test_ids_increase(client: Any) -> None:
    ids = [int(await post(client, f"お知らせ {n}")) for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


async def test_a_reply_chain_and_its_thread(fake: FakeX, client: Any) -> None:
    root = await post(client, "台風情報 (1/3)")
    second = await post(client, "台風情報 (2/3)", reply_to=root)
    third = await post(client, "台風情報 (3/3)", reply_to=second)
    aside = await post(client, "別の返信", reply_to=root)
    assert [p["in_reply_to"] for p in fake.posts] == [None, root, second, root]
    assert [p["id"] for p in fake.thread(third)] == [root, second, third]
    assert [p["text"] for p in fake.thread(third)] == [
        "台風情報 (1/3)",
        "台風情報 (2/3)",
        "台風情報 (3/3)",
    ]
    assert [p["id"] for p in fake.thread(aside)] == [root, aside]
    assert fake.thread(root) == [fake.posts[0]]
    with pytest.raises(KeyError):
        fake.thread("1")


async def test_a_reply_to_a_post_x_does_not_have_is_refused(fake: FakeX, client: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        await post(client, "返信", reply_to="1234567890123456789")
    assert caught.value.api_messages == [REPLY_NOT_VISIBLE]
    with pytest.raises(BadRequest) as caught:
        await post(client, "返信", reply_to="not-an-id")
    assert "in_reply_to_tweet_id" in caught.value.api_messages[0]
    assert fake.posts == []


async def test_japanese_text_is_weighed_as_x_weighs_it(fake: FakeX, client: Any) -> None:
    assert parse_tweet("あ" * 141).weightedLength == 282
    with pytest.raises(BadRequest) as caught:
        await post(client, "あ" * 141)
    error = caught.value
    assert error.response.status == 400
    assert "282" in error.api_messages[0]
    assert error.api_errors[0]["parameters"] == {"text": ["あ" * 141]}
    await post(client, "あ" * 140)
    assert [p["text"] for p in fake.posts] == ["あ" * 140]


async def test_a_url_counts_23_whatever_its_length(fake: FakeX, client: Any) -> None:
    url = "https://www.city.nerima.tokyo.jp/" + "a" * 150
    await post(client, "a" * 256 + " " + url)  # 256 + 1 + 23 = 280
    with pytest.raises(BadRequest):
        await post(client, "b" * 257 + " " + url)  # 281
    assert len(fake.posts) == 1


async def test_empty_text_and_unknown_fields_are_bad_requests(fake: FakeX, client: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        await post(client, "")
    assert caught.value.api_messages == ["$.text: must not be empty"]
    bad_bodies: list[dict[str, Any]] = [
        {"text": "お知らせ", "colour": "blue"},
        {},
        {"text": 42},
        {"text": "お知らせ", "reply": {}},
        {"text": "お知らせ", "reply": {"in_reply_to_tweet_id": "1", "extra": True}},
    ]
    for body in bad_bodies:
        with pytest.raises(BadRequest) as caught:
            await client.request("POST", "/2/tweets", params={}, json=body, user_auth=True)
        body_json = await caught.value.response.json()
        assert body_json["title"] == "Invalid Request"
        assert body_json["detail"] == INVALID_REQUEST_DETAIL
        assert body_json["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert fake.posts == []


async def test_duplicate_content_is_forbidden(fake: FakeX, client: Any) -> None:
    await post(client, "同じ文面")
    with pytest.raises(Forbidden) as caught:
        await post(client, "同じ文面")
    error = caught.value
    assert error.response.status == 403
    assert error.api_errors == []
    assert error.api_messages == [DUPLICATE_CONTENT]
    assert DUPLICATE_CONTENT in str(error)
    assert await error.response.json() == {
        "detail": DUPLICATE_CONTENT,
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
    }
    assert len(fake.posts) == 1


# -- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong",
    [
        {"consumer_secret": "not-the-secret"},
        {"access_token_secret": "not-the-secret"},
        {"consumer_key": "another-app"},
        {"access_token": "another-account"},
    ],
)
async def test_wrong_credentials_are_unauthorized(fake: FakeX, wrong: dict[str, str]) -> None:
    async with x_client(fake, credentials=wrong) as client:
        with pytest.raises(Unauthorized) as caught:
            await post(client, "お知らせ")
    error = caught.value
    assert error.response.status == 401
    assert error.api_messages == ["Unauthorized"]
    assert await error.response.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }
    assert fake.posts == []


async def test_a_bearer_token_is_not_user_context(fake: FakeX) -> None:
    async with x_client(fake, bearer_token="app-only") as client:
        with pytest.raises(Unauthorized):
            await client.get_users_tweets(fake.user_id, user_auth=False)


def signed(method: str, path: str, nonce: str) -> dict[str, str]:
    """Headers oauthlib signs for ``X_ORIGIN + path`` with a chosen nonce."""
    signer = oauth1.Client(
        CREDENTIALS["consumer_key"],
        client_secret=CREDENTIALS["consumer_secret"],
        resource_owner_key=CREDENTIALS["access_token"],
        resource_owner_secret=CREDENTIALS["access_token_secret"],
        nonce=nonce,
        timestamp=str(int(time.time())),
    )
    _, headers, _ = signer.sign(X_ORIGIN + path, method)
    return dict(headers)


async def test_the_signature_covers_the_x_url_and_nonces_work_once(fake: FakeX) -> None:
    timeline = f"/2/users/{fake.user_id}/tweets"
    async with aiohttp.ClientSession() as session:

        async def status(path: str, headers: dict[str, str]) -> int:
            async with session.get(fake.url + path, headers=headers) as response:
                return response.status

        assert await status("/2/users/me", signed("GET", "/2/users/me", "n1")) == 200
        assert await status("/2/users/me", signed("GET", "/2/users/me", "n1")) == 401
        headers = signed("GET", timeline + "?max_results=5", "n2")
        assert await status(timeline + "?max_results=10", headers) == 401  # query tampered
        assert await status(timeline + "?max_results=5", headers) == 200
        assert await status("/2/users/me", {}) == 401
    assert [s for _, _, s in fake.responses] == [200, 401, 401, 200, 401]


# -- faults -----------------------------------------------------------------------------


async def test_a_429_gives_the_reset_time_and_holds_until_then(fake: FakeX, client: Any) -> None:
    fake.fail(429)
    with pytest.raises(TooManyRequests) as caught:
        await post(client, "混雑中")
    error = caught.value
    now = time.time()
    assert isinstance(error.reset_time, int)
    assert now < error.reset_time <= now + 2.1
    assert error.response.headers["x-rate-limit-remaining"] == "0"
    assert error.response.headers["x-rate-limit-reset"] == str(error.reset_time)
    assert error.api_messages == ["Too Many Requests"]
    assert await error.response.json() == {
        "title": "Too Many Requests",
        "detail": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
    }
    with pytest.raises(TooManyRequests):  # the window stays empty until the reset
        await post(client, "混雑中")
    await asyncio.sleep(max(0.0, error.reset_time - time.time()) + 0.05)
    await post(client, "混雑中")
    assert [p["text"] for p in fake.posts] == ["混雑中"]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(fake: FakeX, client: Any, status: int) -> None:
    fake.fail(status)
    with pytest.raises(TwitterServerError) as caught:
        await post(client, "障害中")
    error = caught.value
    assert error.response.status == status
    body = await error.response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert error.api_messages == [body["detail"]]
    assert fake.posts == []
    await post(client, "障害中")  # one fault, one request
    assert len(fake.posts) == 1


async def test_401_and_403_faults(fake: FakeX, client: Any) -> None:
    fake.fail(401, 403)
    with pytest.raises(Unauthorized):
        await post(client, "お知らせ")
    with pytest.raises(Forbidden) as caught:
        await post(client, "お知らせ")
    assert caught.value.api_messages == ["You are not permitted to perform this action."]
    assert fake.posts == []


async def test_faults_apply_in_order_to_posts_only(fake: FakeX, client: Any) -> None:
    fake.fail(503, 500)
    await client.get_me(user_auth=True)  # not a post: no fault taken
    for status in (503, 500):
        with pytest.raises(TwitterServerError) as caught:
            await post(client, "順番")
        assert caught.value.response.status == status
    await post(client, "順番")
    for bad in (404, "slow", 200):
        with pytest.raises(ValueError):
            fake.fail(bad)


async def test_a_timeout_loses_the_answer_but_x_has_the_post(fake: FakeX) -> None:
    fake.fail("timeout")
    async with x_client(fake, timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(client, "届いたかどうか")
        assert time.monotonic() - started < 2
        assert [p["text"] for p in fake.posts] == ["届いたかどうか"]
        with pytest.raises(Forbidden) as caught:  # sending it again
            await post(client, "届いたかどうか")
        assert caught.value.api_messages == [DUPLICATE_CONTENT]
        timeline = await client.get_users_tweets(fake.user_id, user_auth=True)
        assert [t.text for t in timeline.data] == ["届いたかどうか"]
    started = time.monotonic()
    await fake.stop()
    assert time.monotonic() - started < 1.5


async def test_a_hang_accepts_nothing_and_stop_ends_it(fake: FakeX) -> None:
    fake.fail("hang")
    async with x_client(fake, timeout=0.5) as client:
        with pytest.raises(TimeoutError):
            await post(client, "応答なし")
    assert fake.posts == []
    started = time.monotonic()
    await fake.stop()
    assert time.monotonic() - started < 1.5
    assert fake.responses == [("POST", "/2/tweets", 503)]


# -- reading ----------------------------------------------------------------------------


async def test_get_me(fake: FakeX, client: Any) -> None:
    me = (await client.get_me(user_auth=True)).data
    assert (me.id, me.name, me.username) == (1500000000000000001, "練馬区", "nerima_city")
    assert me.data["id"] == fake.user_id  # on the wire ids are strings


async def test_the_timeline_newest_first_with_replies_marked(fake: FakeX, client: Any) -> None:
    root = await post(client, "大雨警報 (1/2)")
    reply = await post(client, "大雨警報 (2/2)", reply_to=root)
    other = await post(client, "ごみ収集のお知らせ")
    fields = ["referenced_tweets", "created_at", "conversation_id"]
    response = await client.get_users_tweets(fake.user_id, tweet_fields=fields, user_auth=True)
    tweets = response.data
    assert [str(t.id) for t in tweets] == [other, reply, root]
    assert [t.text for t in tweets] == ["ごみ収集のお知らせ", "大雨警報 (2/2)", "大雨警報 (1/2)"]
    assert response.meta == {"result_count": 3, "newest_id": other, "oldest_id": root}
    [replied] = tweets[1].referenced_tweets
    assert (replied.type, str(replied.id)) == ("replied_to", root)
    assert tweets[0].referenced_tweets is None and tweets[2].referenced_tweets is None
    assert str(tweets[1].conversation_id) == root
    assert tweets[1].data["edit_history_tweet_ids"] == [reply]
    created = tweets[0].created_at
    assert created.tzinfo is not None
    assert abs((datetime.now(UTC) - created).total_seconds()) < 5

    plain = (await client.get_users_tweets(fake.user_id, user_auth=True)).data
    assert set(plain[1].data) == {"id", "text", "edit_history_tweet_ids"}
    no_replies = await client.get_users_tweets(fake.user_id, exclude=["replies"], user_auth=True)
    assert [str(t.id) for t in no_replies.data] == [other, root]


async def test_the_timeline_pages(fake: FakeX, client: Any) -> None:
    ids = [await post(client, f"お知らせ {n}") for n in range(7)]
    first = await client.get_users_tweets(fake.user_id, max_results=5, user_auth=True)
    assert [str(t.id) for t in first.data] == ids[::-1][:5]
    token = first.meta["next_token"]
    rest = await client.get_users_tweets(
        fake.user_id, max_results=5, pagination_token=token, user_auth=True
    )
    assert [str(t.id) for t in rest.data] == ids[::-1][5:]
    assert "next_token" not in rest.meta
    since = await client.get_users_tweets(fake.user_id, since_id=ids[4], user_auth=True)
    assert [str(t.id) for t in since.data] == [ids[6], ids[5]]


async def test_the_timeline_refuses_what_x_refuses(fake: FakeX, client: Any) -> None:
    empty = await client.get_users_tweets(fake.user_id, user_auth=True)
    assert (empty.data, empty.meta) == (None, {"result_count": 0})
    for max_results in (4, 101):
        with pytest.raises(BadRequest) as caught:
            await client.get_users_tweets(fake.user_id, max_results=max_results, user_auth=True)
        assert "max_results" in caught.value.api_messages[0]
    with pytest.raises(BadRequest):
        await client.get_users_tweets(fake.user_id, tweet_fields=["colour"], user_auth=True)
    stranger = await client.get_users_tweets("42", user_auth=True)
    assert stranger.data is None
    assert stranger.errors[0]["detail"] == "Could not find user with id: [42]."


async def test_unknown_routes_are_404(fake: FakeX, client: Any) -> None:
    with pytest.raises(NotFound):
        await client.request("GET", "/2/nothing", params={}, user_auth=True)
    with pytest.raises(NotFound):  # a known path, the wrong method
        await client.request("GET", "/2/tweets", params={}, user_auth=True)
    assert [status for _, _, status in fake.responses] == [404, 404]


# -- rate limits ------------------------------------------------------------------------


async def test_rate_limit_headers_on_every_response(fake: FakeX) -> None:
    fake.limits[GET_ME] = 2
    async with x_client(fake, return_type=aiohttp.ClientResponse) as client:
        remaining: list[str] = []
        for _ in range(2):
            response = await client.get_me(user_auth=True)
            assert all(name in response.headers for name in RATE_HEADERS)
            assert response.headers["x-rate-limit-limit"] == "2"
            remaining.append(response.headers["x-rate-limit-remaining"])
        assert remaining == ["1", "0"]
        with pytest.raises(TooManyRequests) as caught:
            await client.get_me(user_auth=True)
        reset = caught.value.reset_time
        assert time.time() + 800 < reset <= time.time() + 901  # the 15-minute window
        for failing in (
            client.request("GET", "/2/nothing", params={}, user_auth=True),
            client.create_tweet(text="", user_auth=True),
        ):
            with pytest.raises((NotFound, BadRequest)) as raised:
                await failing
            assert all(name in raised.value.response.headers for name in RATE_HEADERS)
    async with x_client(fake, credentials={"consumer_secret": "wrong"}) as client:
        with pytest.raises(Unauthorized) as unauthorized:
            await post(client, "x")
        assert all(name in unauthorized.value.response.headers for name in RATE_HEADERS)


async def test_post_texts_stay_out_of_logs(
    fake: FakeX, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail(503)
    for _ in range(2):
        try:
            await post(client, "個人情報を含むかもしれない本文")
        except TwitterServerError:
            pass
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [m for m in loud if "個人情報" in m]


DAILY_HEADERS = tuple(
    f"x-{scope}-limit-24hour-{part}"
    for scope in ("user", "app")
    for part in ("limit", "remaining", "reset")
)


async def test_posts_are_held_to_xs_published_limits(fake: FakeX) -> None:
    """100 per user in 15 minutes, 10,000 per app in 24 hours, said on every post."""
    async with x_client(fake, return_type=aiohttp.ClientResponse) as client:
        first = await client.create_tweet(text="お知らせ 0", user_auth=True)
        headers = first.headers
        assert headers["x-rate-limit-limit"] == "100"
        assert headers["x-rate-limit-remaining"] == "99"
        assert all(name in headers for name in DAILY_HEADERS)
        assert headers["x-app-limit-24hour-limit"] == "10000"
        assert headers["x-app-limit-24hour-remaining"] == "9999"
        assert headers["x-user-limit-24hour-remaining"] == "9999"
        day = int(headers["x-app-limit-24hour-reset"])
        assert time.time() + 86300 < day <= time.time() + 86401
        for n in range(1, 100):
            await client.create_tweet(text=f"お知らせ {n}", user_auth=True)
        with pytest.raises(TooManyRequests) as caught:
            await client.create_tweet(text="お知らせ 100", user_auth=True)
        refused = caught.value.response.headers
        assert refused["x-rate-limit-remaining"] == "0"
        assert refused["x-app-limit-24hour-remaining"] == "9900"
        me = await client.get_me(user_auth=True)  # another endpoint, its own window
        assert me.headers["x-rate-limit-remaining"] == "74"
        assert not any(name in me.headers for name in DAILY_HEADERS)
    assert len(fake.posts) == 100


async def test_the_15_minute_window_rolls(fake: FakeX) -> None:
    """Room comes back as each post grows a window old, not all at once: a fixed window
    would take two more at its end."""
    fake.limits[POST_TWEETS], fake.window = 2, 3.0
    async with x_client(fake) as client:
        await post(client, "一件目")
        await asyncio.sleep(1.5)
        await post(client, "二件目")
        with pytest.raises(TooManyRequests) as caught:
            await post(client, "三件目")
        reset = caught.value.reset_time
        first_at = fake.posts[0]["at"] - time.monotonic() + time.time()
        assert first_at + 3 <= reset <= first_at + 4  # when the first leaves the window
        await asyncio.sleep(max(0.0, reset - time.time()) + 0.05)
        await post(client, "三件目")  # the first has left
        with pytest.raises(TooManyRequests) as caught:
            await post(client, "四件目")  # the second has not
        assert caught.value.reset_time > reset
    assert [p["text"] for p in fake.posts] == ["一件目", "二件目", "三件目"]


@pytest.mark.parametrize(("user", "app", "spent"), [(5, 2, "app"), (1, 5, "user")])
async def test_posts_are_held_to_the_24_hours(fake: FakeX, user: int, app: int, spent: str) -> None:
    fake.daily_limits.update(user=user, app=app)
    fake.day = 3.0
    async with x_client(fake, return_type=aiohttp.ClientResponse) as client:
        for n in range(min(user, app)):
            answer = await client.create_tweet(text=f"お知らせ {n}", user_auth=True)
        assert answer.headers[f"x-{spent}-limit-24hour-remaining"] == "0"
        with pytest.raises(TooManyRequests) as caught:
            await client.create_tweet(text="もう一件", user_auth=True)
        refused = caught.value.response.headers
        assert refused[f"x-{spent}-limit-24hour-remaining"] == "0"
        assert int(refused["x-rate-limit-remaining"]) > 0  # the 15 minutes are not spent
        reset = int(refused[f"x-{spent}-limit-24hour-reset"])
        assert time.time() < reset <= time.time() + 4
        await asyncio.sleep(max(0.0, reset - time.time()) + 0.05)
        again = await client.create_tweet(text="もう一件", user_auth=True)  # it rolled
        assert again.status == 201
    assert len(fake.posts) == min(user, app) + 1
