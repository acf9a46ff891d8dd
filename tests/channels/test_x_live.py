"""X for real: tweepy's async client against the fake X API, through the whole pipeline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from twitter_text import parse_tweet

from notifier import intake
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import (
    announcement,
    finished,
    kill_worker_once,
    make_settings,
    take_over,
    wait_for,
    worker_env,
    x_settings,
)
from tests.fake_x import FakeX

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
    notice = intake.validate(announcement(channels=["x"], **fields), runtime.settings)
    await intake.enqueue(runtime.notices, notice)
    assert notice.id is not None
    return notice.id


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


async def test_the_daily_budget_holds_routine_notices(
    tmp_path: Path, prefix: str, fake_x: FakeX, runtime: Runtime
) -> None:
    settings = x_settings(tmp_path, prefix, fake_x.url, x_daily_limit=2, x_alert_reserve=1)
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["x"])
    await service.start()
    try:
        first = await post(runtime, title="一件目", areas=[])
        assert (await finished(runtime, first))["progress"]["x"]["sent"] == 1
        second = await post(runtime, title="二件目", areas=[])

        async def held() -> bool:
            return await runtime.redis.zcard(runtime.keys.retries) == 1

        await wait_for(held)
        found = await runtime.notices.get(second)
        assert found is not None and found["progress"]["x"]["pending"] == 1
    finally:
        await service.stop()
    assert [p["text"].split("\n")[0] for p in fake_x.posts] == ["【お知らせ】一件目"]


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
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["x"])
    await service.start()
    try:
        notice_id = await post(runtime, title="避難指示", body=LONG, areas=[])
        await finished(runtime, notice_id)
    finally:
        await service.stop()
    requests = json.loads((settings.outbox_dir / "x" / f"{notice_id}.json").read_text())
    assert len(requests) >= 4 and "reply" not in requests[0]
    assert [r["reply"]["in_reply_to_tweet_id"] for r in requests[1:]] == [
        f"(post {i})" for i in range(1, len(requests))
    ]
    assert all(parse_tweet(r["text"]).valid for r in requests)
