"""X for real: tweepy's async client against the fake X API, through the whole pipeline."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tweepy.asynchronous import AsyncClient
from twitter_text import parse_tweet

from channels.x_session import x_session
from notifier import alerts
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import (
    X_CREDENTIALS,
    delivering,
    enqueued,
    finished,
    kill_worker_once,
    make_settings,
    take_over,
    wait_for,
    worker_env,
    x_settings,
)
from tests.fake_x import POST_TWEETS, FakeX

ROOT = Path(__file__).resolve().parents[2]
LONG = "区内全域に避難指示が出ています。落ち着いて最寄りの避難所へ向かってください。" * 12


@pytest.fixture
async def fake_x() -> AsyncIterator[FakeX]:
    fake = FakeX()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def settings(tmp_path: Path, prefix: str, fake_x: FakeX) -> Settings:
    return x_settings(tmp_path, prefix, fake_x.url)


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Service]:
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["x"])
    await service.start()
    yield service
    await service.stop()


async def post(runtime: Runtime, **fields: Any) -> str:
    return await enqueued(runtime, channels=["x"], **fields)


def the_thread(fake: FakeX) -> list[dict[str, Any]]:
    """The one thread on the account, first post first, checked to be a single chain."""
    chain = fake.thread(fake.posts[-1]["id"])
    assert [p["id"] for p in chain] == [p["id"] for p in fake.posts]  # nothing else posted
    return chain


async def test_a_long_japanese_notice_is_a_chained_numbered_thread(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
    result = await finished(runtime, notice_id)
    assert result["progress"]["x"] == {"recipients": 1, "sent": 1, "failed": 0, "pending": 0}
    chain = the_thread(fake_x)
    assert len(chain) >= 4
    for i, item in enumerate(chain, start=1):
        assert parse_tweet(item["text"]).valid
        assert item["text"].endswith(f"({i}/{len(chain)})")
    assert chain[0]["in_reply_to"] is None
    assert "#練馬区" in chain[-1]["text"]
    log = await runtime.redis.hgetall(runtime.keys.batch_log(notice_id))
    (entry,) = [json.loads(v) for v in log.values()]
    assert entry["post_ids"] == [p["id"] for p in chain]


async def test_a_notice_with_a_link_is_one_post_that_ends_with_it(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    url = "https://www.city.nerima.tokyo.jp/bousai/"
    notice_id = await post(runtime, body=LONG, url=url, areas=[])
    await finished(runtime, notice_id)
    (only,) = fake_x.posts
    assert parse_tweet(only["text"]).valid
    assert only["text"].endswith(f"…\n{url}\n#練馬区")


async def test_a_lost_answer_is_looked_for_before_posting_again(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    fake_x.fail(500, "timeout")  # post 1: a server error; then X takes it, the answer is lost
    notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
    result = await finished(runtime, notice_id)
    assert result["progress"]["x"]["sent"] == 1
    chain = the_thread(fake_x)
    assert len({p["text"] for p in chain}) == len(chain) == len(fake_x.posts)
    statuses = [s for m, path, s in fake_x.responses if m == "POST"]
    assert 403 not in statuses  # it was found, not posted again into a duplicate


async def test_duplicate_content_counts_as_posted(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    first = await post(runtime, areas=[])
    await finished(runtime, first)
    again = await post(runtime, areas=[])  # the very same text once more: X refuses it
    result = await finished(runtime, again)
    assert result["status"] == "done" and result["progress"]["x"]["sent"] == 1
    assert len(fake_x.posts) == 1
    assert ("POST", "/2/tweets", 403) in fake_x.responses


async def test_rate_limits_and_server_errors_are_waited_out(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    fake_x.fail(429, 503, 429)
    notice_id = await post(runtime, areas=[])
    result = await finished(runtime, notice_id)
    assert result["progress"]["x"]["sent"] == 1
    assert len(fake_x.posts) == 1


async def test_a_refusal_fails_the_notice_with_xs_message(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    fake_x.fail(401)
    notice_id = await post(runtime, areas=[])
    result = await finished(runtime, notice_id)
    assert result["status"] == "failed"
    failures = [
        json.loads(f) for f in await runtime.redis.lrange(runtime.keys.failures(notice_id), 0, -1)
    ]
    assert failures and failures[0]["reason"].startswith("X 401")
    assert fake_x.posts == []
    assert await runtime.redis.zcard(runtime.keys.x_posts) == 0  # its room given back


async def issue(runtime: Runtime, title: str) -> str:
    payload = {"title": title, "body": "直ちに避難してください。", "severity": "emergency"}
    notice = alerts.validate({**payload, "areas": [], "channels": ["x"]}, runtime.settings)
    return (await runtime.alerts.issue(notice, "desk")).id


async def held(runtime: Runtime, notice_id: str) -> None:
    """Until the notice's X post waits for room (its batch in the retries, none sent)."""

    async def waiting() -> bool:
        found = await runtime.notices.get(notice_id)
        progress = found["progress"].get("x", {}) if found else {}
        retried = await runtime.redis.zcard(runtime.keys.retries) > 0
        return retried and progress.get("pending") == 1

    await wait_for(waiting)


async def age(runtime: Runtime, seconds: float) -> None:
    """The service as it will be ``seconds`` from now: the account's posts older by that
    much, and the retries due that much sooner."""
    for key in (runtime.keys.x_posts, runtime.keys.retries):
        entries = await runtime.redis.zrange(key, 0, -1, withscores=True)
        if entries:
            await runtime.redis.zadd(key, {member: at - seconds for member, at in entries})


def firsts(fake: FakeX) -> list[str]:
    return [p["text"].split("\n")[0] for p in fake.posts]


@pytest.mark.parametrize("window", ["x_15min_limit", "x_daily_limit"])
async def test_routine_notices_stop_before_the_reserve_and_alerts_may_use_it(
    tmp_path: Path, prefix: str, fake_x: FakeX, runtime: Runtime, window: str
) -> None:
    limits = {window: 2, "x_alert_reserve": 1}
    settings = x_settings(tmp_path, prefix, fake_x.url, **limits)
    async with delivering(settings, "x"):
        first = await post(runtime, title="一件目", areas=[])
        assert (await finished(runtime, first))["progress"]["x"]["sent"] == 1
        second = await post(runtime, title="二件目", areas=[])
        await held(runtime, second)  # the last post of the window is the alerts'
        for title in ("避難指示", "避難指示の続報"):  # the reserve, then beyond: X may take
            # more than the settings say, and only X holds an alert
            alert = await issue(runtime, title)
            assert (await finished(runtime, alert))["progress"]["x"]["sent"] == 1
        found = await runtime.notices.get(second)
        assert found is not None and found["progress"]["x"]["pending"] == 1
    assert firsts(fake_x) == ["【お知らせ】一件目", "【緊急】避難指示", "【緊急】避難指示の続報"]
    assert [s for _, _, s in fake_x.responses] == [201, 201, 201]  # the service held, not X


async def test_a_thread_that_does_not_fit_waits_then_goes_whole(
    tmp_path: Path, prefix: str, fake_x: FakeX, runtime: Runtime
) -> None:
    settings = x_settings(tmp_path, prefix, fake_x.url, x_15min_limit=7, x_alert_reserve=1)
    async with delivering(settings, "x"):
        for n in range(3):
            await finished(runtime, await post(runtime, title=f"{n + 1}件目", areas=[]))
        await age(runtime, 15 * 60 - 2.5)  # they leave the window in 2.5 s
        notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
        await held(runtime, notice_id)  # 3 + 4 posts: one more than routine notices may
        assert len(fake_x.posts) == 3  # nothing of the thread went out meanwhile
        result = await finished(runtime, notice_id)
    assert result["progress"]["x"]["sent"] == 1
    chain = fake_x.thread(fake_x.posts[-1]["id"])
    assert [p["id"] for p in chain] == [p["id"] for p in fake_x.posts[3:]]
    assert [p["text"][-5:] for p in chain] == [f"({i}/4)" for i in range(1, 5)]


async def test_a_thread_longer_than_the_window_cannot_wait_for_ever(
    tmp_path: Path, prefix: str, fake_x: FakeX, runtime: Runtime, settings: Settings
) -> None:
    """One the window could never take whole: composed shorter, or, composed under other
    settings, posted in parts, each when there is room."""
    small = x_settings(tmp_path, prefix, fake_x.url, x_15min_limit=3, x_alert_reserve=0)
    async with delivering(small, "x"):
        capped = await post(runtime, title="避難指示", body=LONG, areas=[])
        await finished(runtime, capped)
    chain = the_thread(fake_x)
    assert len(chain) == 3 and chain[-1]["text"].endswith("… (3/3)")

    await age(runtime, 15 * 60)  # an empty window again
    fake_x.posts.clear()
    dispatcher = Service(settings, parts=["dispatch"])  # threads of up to 5 posts
    await dispatcher.start()
    try:
        notice_id = await post(runtime, title="避難指示（続報）", body=LONG, areas=[])
        await wait_for(lambda: runtime.redis.xlen(runtime.keys.delivery("x", "normal")))
    finally:
        await dispatcher.stop()
    tighter = small.model_copy(update={"x_15min_limit": 2})
    worker = Service(tighter, parts=["workers"], channel_names=["x"])
    await worker.start()
    try:
        await held(runtime, notice_id)
        assert len(fake_x.posts) == 2  # as many as the window takes, in order
        await age(runtime, 15 * 60 - 1)
        result = await finished(runtime, notice_id)
    finally:
        await worker.stop()
    assert result["progress"]["x"]["sent"] == 1
    chain = fake_x.thread(fake_x.posts[-1]["id"])
    assert [p["id"] for p in chain] == [p["id"] for p in fake_x.posts]
    assert [p["text"][-5:] for p in chain] == [f"({i}/4)" for i in range(1, 5)]


@pytest.mark.parametrize("window", ["15min", "app-24h"])
async def test_the_service_waits_until_the_reset_x_names(
    runtime: Runtime,
    running: Service,
    fake_x: FakeX,
    window: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """X says the window is spent with the post that spends it: the rest of the thread
    waits until then, and X never has to refuse one."""
    caplog.set_level(logging.INFO, "notifier")
    if window == "15min":
        fake_x.limits[POST_TWEETS], fake_x.window = 2, 3.0
    else:
        fake_x.daily_limits["app"], fake_x.day = 2, 3.0
    notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
    result = await finished(runtime, notice_id)
    assert result["progress"]["x"]["sent"] == 1
    chain = the_thread(fake_x)
    assert [p["text"][-5:] for p in chain] == [f"({i}/4)" for i in range(1, 5)]
    assert [s for _, _, s in fake_x.responses if s >= 400] == []
    at = [p["at"] for p in chain]
    assert at[2] - at[0] >= 2.9 and at[3] - at[1] >= 2.9  # each waited for room
    reached = [r for r in caplog.records if r.getMessage() == "x.limit_reached"]
    assert {r.__dict__["window"] for r in reached} == {window} and len(reached) >= 2
    assert not [r for r in caplog.records if "避難" in str(r.__dict__)]  # no post text


async def test_a_429_waits_for_the_window_x_says_is_spent(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    """The app's 24 hours spent elsewhere: X's 15-minute reset comes sooner, but the
    service waits until the 24-hour one, and X refuses it once."""
    fake_x.daily_limits["app"], fake_x.day, fake_x.window = 1, 4.0, 1.0
    other = AsyncClient(**{k.removeprefix("x_"): v for k, v in X_CREDENTIALS.items()})
    other.session = x_session(fake_x.url)  # another tool on the ward's X app
    try:
        await other.create_tweet(text="別の投稿", user_auth=True)
    finally:
        await other.session.close()
    spent_at = time.monotonic()
    notice_id = await post(runtime, areas=[])
    assert (await finished(runtime, notice_id))["progress"]["x"]["sent"] == 1
    assert [s for m, _, s in fake_x.responses if m == "POST"] == [201, 429, 201]
    assert fake_x.posts[-1]["at"] - spent_at >= 3.0


async def test_room_another_tool_took_is_counted_and_a_thread_waits_for_it(
    runtime: Runtime, running: Service, fake_x: FakeX
) -> None:
    """Another tool on the ward's account posts 3 of the window's 5: X's answer to the
    service's next post says 1 remains, and a thread of 4 then waits for the window's
    reset, instead of posting its first at once and stopping half-way."""
    fake_x.limits[POST_TWEETS], fake_x.window = 5, 3.0
    other = AsyncClient(**{k.removeprefix("x_"): v for k, v in X_CREDENTIALS.items()})
    other.session = x_session(fake_x.url)
    try:
        for n in range(3):
            await other.create_tweet(text=f"別の投稿{n}", user_auth=True)
    finally:
        await other.session.close()
    await finished(runtime, await post(runtime, title="一件目", areas=[]))
    notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
    assert (await finished(runtime, notice_id))["progress"]["x"]["sent"] == 1
    chain = fake_x.thread(fake_x.posts[-1]["id"])
    assert [p["text"][-5:] for p in chain] == [f"({i}/4)" for i in range(1, 5)]
    assert chain[0]["at"] - fake_x.posts[0]["at"] >= 2.9  # not before the reset
    assert [s for _, _, s in fake_x.responses if s >= 400] == []


@pytest.mark.parametrize("mention", [True, False])
async def test_a_thread_with_a_link_has_it_in_one_post(
    tmp_path: Path, prefix: str, fake_x: FakeX, runtime: Runtime, mention: bool
) -> None:
    """X charges a post with a link more: once in the thread, where the body has it or
    at the end, even when the thread is cut short."""
    url = "https://www.city.nerima.tokyo.jp/bousai/"
    hashtags = ["#練馬区", "#練馬区防災情報", "#練馬区からのお知らせ"]  # no room beside a link
    settings = x_settings(tmp_path, prefix, fake_x.url, x_hashtags=hashtags)
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["x"])
    await service.start()
    body = f"詳しくは {url} をご覧ください。{LONG}" if mention else LONG * 2
    try:
        notice_id = await post(runtime, title="避難所開設のお知らせ" * 10, body=body, url=url)
        await finished(runtime, notice_id)
    finally:
        await service.stop()
    chain = the_thread(fake_x)
    assert len(chain) > 1
    assert [url in p["text"] for p in chain].count(True) == 1
    if not mention:  # cut short at 5 posts, the link stays
        assert len(chain) == 5 and chain[-1]["text"].endswith(" ".join(hashtags) + " (5/5)")


async def test_a_worker_killed_mid_thread_is_continued_not_restarted(
    runtime: Runtime, fake_x: FakeX, settings: Settings, tmp_path: Path, prefix: str
) -> None:
    dispatcher = Service(settings, parts=["dispatch"])
    await dispatcher.start()
    try:
        notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
        await wait_for(lambda: runtime.redis.xlen(runtime.keys.delivery("x", "normal")))
    finally:
        await dispatcher.stop()
    fake_x.fail("ok", "ok", "hang")  # the third post never comes back: the worker is stuck
    env = worker_env(settings, NOTIFIER_X_TIMEOUT="60")
    await kill_worker_once("x", env, lambda: _at_least(fake_x.posts, 2))
    result = await take_over(settings, "x", runtime, notice_id)
    assert result["progress"]["x"]["sent"] == 1
    chain = the_thread(fake_x)
    assert len({p["text"] for p in chain}) == len(chain) >= 4


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_without_credentials_the_thread_lands_in_the_outbox(
    tmp_path: Path, prefix: str, runtime: Runtime
) -> None:
    settings = make_settings(tmp_path, prefix)
    async with delivering(settings, "x"):
        notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
        await finished(runtime, notice_id)
    requests = json.loads((settings.outbox_dir / "x" / f"{notice_id}.json").read_text())
    assert len(requests) >= 4 and "reply" not in requests[0]
    assert [r["reply"]["in_reply_to_tweet_id"] for r in requests[1:]] == [
        f"(post {i})" for i in range(1, len(requests))
    ]
    assert all(parse_tweet(r["text"]).valid for r in requests)
