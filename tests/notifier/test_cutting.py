"""Cutting audiences into batches straight from the subscriber index: the batches hold
exactly the audience the index arithmetic gives, each id once, in full batches."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from notifier.dispatch import Dispatcher
from notifier.runtime import Runtime
from tests.conftest import announcement, make_settings

AREAS = ["nerima", "hikarigaoka", "shakujii", "oizumi"]
TOPICS = ["disaster", "garbage", "events", "tax"]
LANGUAGES = ["ja", "easy", "en", "zh", "ko"]


@pytest.fixture
async def runtime(tmp_path: Path, prefix: str) -> Any:
    settings = make_settings(tmp_path, prefix, line_batch_size=7, email_batch_size=5)
    rt = Runtime.open(settings)
    yield rt
    await rt.close()


async def residents(runtime: Runtime, n: int, seed: int) -> None:
    """n subscribers with random choices, on LINE and (one in ten) by email."""
    rng = random.Random(seed)
    store = runtime.subscribers
    subscribers = []
    for i in range(n):
        email = i % 10 == 0
        subscribers.append(
            store.validate(
                {
                    "channel": "email" if email else "line",
                    "address": f"resident{i}@example.jp" if email else f"U{i:032x}",
                    "areas": rng.sample(AREAS, rng.choice([0, 1, 2])),
                    "topics": rng.sample(TOPICS, rng.choice([0, 1, 2])),
                    "language": rng.choice(LANGUAGES),
                }
            )
        )
    await store.save(subscribers)


async def dispatch(runtime: Runtime, notice: dict[str, Any]) -> list[dict[str, Any]]:
    rt = runtime
    raw = json.dumps(notice)
    entry = (await rt.redis.xadd(rt.keys.intake, {"notice": raw})).decode()
    d = Dispatcher(rt.settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics)
    await d.handle(entry, {b"notice": raw.encode()})
    jobs = []
    for channel in ("line", "email"):
        stream = rt.keys.delivery(channel, "normal")
        jobs += [json.loads(f[b"data"]) for _, f in await rt.redis.xrange(stream)]
    return jobs


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_batches_hold_exactly_the_audience_each_id_once(
    runtime: Runtime, seed: int
) -> None:
    await residents(runtime, 1500, seed)
    notice = announcement(
        areas=["nerima", "oizumi"],
        topics=["garbage", "events"],
        channels=["line", "email"],
        translations={"en": {"title": "Bulky waste", "body": "New days."}},
    )
    jobs = await dispatch(runtime, notice)
    for channel, size in (("line", 7), ("email", 5)):
        expected = await runtime.subscribers.audience(
            channel, ["nerima", "oizumi"], ["garbage", "events"]
        )
        english = expected.by_language.get("en", set())
        japanese = set().union(*(v for k, v in expected.by_language.items() if k != "en"))
        ours = [j for j in jobs if j["channel"] == channel]
        for lang, wanted in (("en", english), ("ja", japanese)):
            batches = [j["recipients"] for j in ours if j["lang"] == lang]
            ids = [sid for batch in batches for sid in batch]
            assert Counter(ids) == Counter(wanted), (channel, lang)
            assert all(len(b) == size for b in batches[:-1])  # full, but the last
            assert 0 < len(batches[-1]) <= size if batches else not wanted
        assert sorted(j["n"] for j in ours) == list(range(len(ours)))
        found = await runtime.notices.list()
        progress = found[0]["progress"][channel]
        assert progress["recipients"] == progress["pending"] == len(english | japanese)
    k = runtime.keys
    assert [key async for key in runtime.redis.scan_iter(match=f"{k.prefix}aud:*")] == []
    assert "line:cutting" not in {
        f.decode() for f in await runtime.redis.hkeys(k.progress(found[0]["id"]))
    }


async def test_an_empty_audience_is_done_at_once(runtime: Runtime) -> None:
    await residents(runtime, 30, 7)
    notice = announcement(areas=["nerima"], topics=["tax"], channels=["line"])
    store = runtime.subscribers
    await store.save([store.validate({"channel": "email", "address": "only@example.jp"})])
    audience = await store.audience("line", ["nerima"], ["tax"])
    for sid in set().union(*audience.by_language.values()):
        await store.delete(sid)
    assert await dispatch(runtime, notice) == []
    (found,) = await runtime.notices.list()
    assert found["status"] == "done"
    assert found["progress"]["line"] == {"recipients": 0, "sent": 0, "failed": 0, "pending": 0}
