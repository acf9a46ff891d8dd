"""The state scripts (notifier/lua) and their owner: the files' declarations, calls by
keyword, the batch entry on the wire (and the form before it), replication (WAIT), and
alerts issued once per idempotency key."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import channels
from channels.base import Context
from notifier import alerts, intake
from notifier.alerts import AlertDesk
from notifier.config import Settings
from notifier.dispatch import Dispatcher
from notifier.runtime import Runtime
from notifier.states import SCRIPTS, BatchEntry, Scripts, load, parse
from notifier.store import IDEMPOTENCY_TTL, NoticeStore
from notifier.worker import ChannelWorker
from tests.conftest import announcement, channel_progress, finished, make_settings

USERS = [f"U{i:032x}" for i in range(5)]
LIBRARIES = {"rest": "-- rest\nlocal function rest(list, first) end\n"}


def unreplicated(settings: Settings) -> Settings:
    """The settings asking for a replica that the tests' Redis does not have."""
    return settings.model_copy(update={"redis_min_replicas": 1, "redis_replica_timeout": 0.05})


def decoded(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


# the scripts' files


def test_every_script_names_its_keys_and_arguments_and_says_what_it_writes() -> None:
    scripts = load()
    assert set(scripts) == set(SCRIPTS)
    folder = Path(__file__).resolve().parents[2] / "notifier" / "lua"
    used = {lib for script in scripts.values() for lib in script.uses}
    assert (
        {p.stem for p in folder.glob("*.lua")}
        == set(SCRIPTS) | used
        == {
            *SCRIPTS,
            "rest",
            "settle",
        }
    )
    for name, script in scripts.items():
        text = (folder / f"{name}.lua").read_text()
        assert text.startswith(f"-- {name}: ")
        assert "Writes" in text.split("\nlocal ")[0], name  # what it writes together
        assert all(k.endswith("_key") for k in script.keys), name
    record = scripts["record"]
    assert record.keys[:2] == ("done_key", "progress_key")
    assert record.args[0] == "batch" and record.more_args == "failures"
    assert record.uses == ("rest", "settle")
    assert record.source.index("local function settle") < record.source.index("-- record:")
    cut = scripts["cut"]
    assert (cut.more_keys, cut.more_args) == ("check_keys", "check_sizes")
    assert "steps_per_call" in cut.args and "page_size" in cut.args


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("local a_key = KEYS[1]\n", "header comment"),
        ("-- x: writes\nlocal a_key = KEYS[2]\n", "in order"),
        ("-- x: writes\nlocal a_key = KEYS[1]\nreturn ARGV[1]\n", "named locals"),
        ("-- x: writes\nlocal a = KEYS[1]\n", "*_key"),
        ("-- x: writes\nlocal now_key = ARGV[1]\n", "like a key"),
        ("-- x: writes\nlocal client = ARGV[1]\n", "'client'"),
        ("-- x: writes\nlocal a_keys = rest(KEYS, 1)\n", "without '-- uses: rest'"),
        ("-- x: writes\n-- uses: settle\nlocal now = ARGV[1]\n", "not a file"),
        ("-- x: writes\n-- uses: rest\nlocal a = ARGV[1]\nlocal b = rest(ARGV, 3)\n", "after"),
    ],
)
def test_a_script_that_breaks_the_conventions_is_refused_when_loaded(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"^x\.lua: ") as refused:
        parse("x", text, LIBRARIES)
    assert why in str(refused.value)


async def test_a_missing_or_unknown_name_is_a_type_error_before_anything_is_sent() -> None:
    nowhere = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens: a send would fail
    scripts = Scripts(nowhere)
    try:
        with pytest.raises(TypeError, match=r"missing \['seconds'\]"):
            await scripts.run("breaker", breaker_key="b")
        with pytest.raises(TypeError, match=r"unknown \['second'\]"):
            await scripts.run("breaker", breaker_key="b", seconds=1, second=1)
        with pytest.raises(TypeError, match="failures is a list"):
            await scripts.run_replicated(
                "record",
                **dict.fromkeys(load()["record"].keys, "k"),
                **dict.fromkeys(load()["record"].args, "v"),
                failures="one",
            )
    finally:
        await nowhere.aclose()


async def test_a_script_runs_with_keyword_arguments_and_its_list_tails(runtime: Runtime) -> None:
    k, scripts = runtime.keys, Scripts(runtime.redis)
    assert await scripts.run("breaker", breaker_key=k.breaker("line"), seconds=60) == 1
    assert await scripts.run("breaker", breaker_key=k.breaker("line"), seconds=60) == 2
    assert 0 < await runtime.redis.ttl(k.breaker("line")) <= 60
    scratch = [k.scratch("a"), k.scratch("b")]
    for key in scratch:
        await runtime.redis.set(key, 1)
    await runtime.redis.hset(k.progress("n1"), mapping={"line:cutting": 1, "line:pending": 0})
    await scripts.run(
        "finish",
        progress_key=k.progress("n1"),
        notice_key=k.notice("n1"),
        scratch_keys=scratch,
        now=1.0,
        channels=["line"],
    )
    assert await runtime.redis.exists(*scratch) == 0
    assert await runtime.redis.hkeys(k.progress("n1")) == [b"line:pending"]


# replication


async def test_a_script_no_replica_confirms_in_time_is_done_but_not_replicated(
    runtime: Runtime,
) -> None:
    k = runtime.keys
    lone = Scripts(runtime.redis, min_replicas=1, replica_timeout=0.05)
    result, replicated = await lone.run_replicated("breaker", breaker_key=k.breaker("x"), seconds=9)
    assert (result, replicated) == (1, False)
    assert await runtime.redis.get(k.breaker("x")) == b"1"  # written all the same
    result, replicated = await Scripts(runtime.redis).run_replicated(
        "breaker", breaker_key=k.breaker("x"), seconds=9
    )
    assert (result, replicated) == (2, True)  # no replica asked for: no WAIT


async def test_a_replicated_script_redis_has_forgotten_is_loaded_and_run_once(
    runtime: Runtime,
) -> None:
    """A restarted or promoted Redis has no scripts: NOSCRIPT ran nothing, so the script
    is loaded and run again, once."""
    k = runtime.keys
    lone = Scripts(runtime.redis, min_replicas=1, replica_timeout=0.05)
    assert await lone.run_replicated("breaker", breaker_key=k.breaker("y"), seconds=9) == (
        1,
        False,
    )
    await runtime.redis.script_flush()
    assert await lone.run_replicated("breaker", breaker_key=k.breaker("y"), seconds=9) == (
        2,
        False,
    )
    assert await runtime.redis.get(k.breaker("y")) == b"2"


async def test_a_batch_record_no_replica_confirms_is_logged_and_counted(
    settings: Settings, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    notice_id = await queue_line_notice(settings, runtime)
    lone = unreplicated(settings)
    with caplog.at_level(logging.WARNING, logger="notifier.worker"):
        view = await run_worker(lone, runtime, notice_id)
    assert view["status"] == "done" and view["progress"]["line"]["sent"] == 5
    warned = [r.__dict__ for r in caplog.records if r.getMessage() == "batch.not_replicated"]
    assert [(w["levelname"], w["notice"], w["channel"], w["batch"]) for w in warned] == [
        ("WARNING", notice_id, "line", 0)
    ]


# the batch entry


def test_a_batch_entry_round_trips_its_fields_and_reads_the_form_before_them() -> None:
    entry = BatchEntry("n1", "alert", "print", "ja", 3, (), ("nerima", "oizumi"), 2, 4)
    fields = entry.to_fields()
    assert fields == {
        "notice": "n1",
        "kind": "alert",
        "channel": "print",
        "lang": "ja",
        "n": "3",
        "recipients": "[]",
        "areas": '["nerima","oizumi"]',
        "size": "2",
        "attempt": "4",
    }
    assert BatchEntry.from_fields({k.encode(): v.encode() for k, v in fields.items()}) == entry
    assert BatchEntry.from_fields({**fields, "recipients": "{}"}) == entry  # Lua's empty list
    before = {"data": json.dumps(asdict(entry))}  # the one JSON field of the version before
    assert BatchEntry.from_fields(before) == entry
    member = json.loads(entry.retry_member("s"))
    assert member["stream"] == "s" and member["fields"][:4] == ["notice", "n1", "kind", "alert"]


async def test_what_the_cut_script_writes_round_trips_through_from_fields(
    runtime: Runtime,
) -> None:
    await subscribe(runtime, USERS)
    raw = json.dumps(announcement(channels=["line"]))
    entry_id = (await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})).decode()
    rt = runtime
    dispatcher = Dispatcher(
        rt.settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics
    )
    await dispatcher.handle(entry_id, {b"notice": raw.encode()})
    ((_, fields),) = await runtime.redis.xrange(runtime.keys.delivery("line", "normal"))
    entry = BatchEntry.from_fields(fields)
    assert list(entry.to_fields().items()) == list(decoded(fields).items())  # the very wire
    (notice,) = await runtime.notices.list()
    ids = await runtime.subscribers.audience("line", [], None)
    assert entry == BatchEntry(
        notice=notice["id"],
        kind="announcement",
        channel="line",
        lang="ja",
        n=0,
        recipients=tuple(sorted(set().union(*ids.by_language.values()))),
        areas=(),
        size=5,
        attempt=1,
    )


async def test_a_retry_goes_back_on_its_stream_as_the_same_fields(runtime: Runtime) -> None:
    k, scripts = runtime.keys, Scripts(runtime.redis)
    stream = k.delivery("line", "normal")
    entry = BatchEntry("n1", "announcement", "line", "en", 7, ("a", "b"), (), 2, 3)
    await runtime.redis.zadd(k.retries, {entry.retry_member(stream): 0})
    assert await scripts.run("requeue", retries_key=k.retries, now=1.0) == 1
    ((_, fields),) = await runtime.redis.xrange(stream)
    assert decoded(fields) == entry.to_fields()
    assert await runtime.redis.zcard(k.retries) == 0


async def test_batches_and_retries_queued_in_the_form_before_are_delivered_after_an_upgrade(
    tmp_path: Path, prefix: str
) -> None:
    settings = make_settings(tmp_path, prefix, line_batch_size=2)
    runtime = Runtime.open(settings)
    try:
        notice_id = await queue_line_notice(settings, runtime)
        k, stream = runtime.keys, runtime.keys.delivery("line", "normal")
        entries = await runtime.redis.xrange(stream)
        assert len(entries) == 3
        await runtime.redis.delete(stream)
        for i, (_, fields) in enumerate(entries):  # as the version before wrote them
            entry = BatchEntry.from_fields(fields)
            if i < 2:
                await runtime.redis.xadd(stream, {"data": json.dumps(asdict(entry))})
            else:  # a retry waiting in the retries set, due now
                data = json.dumps(asdict(replace(entry, attempt=2)))
                member = json.dumps({"stream": stream, "data": data})
                await runtime.redis.zadd(k.retries, {member: 0})
        view = await run_worker(settings, runtime, notice_id)
        assert view["status"] == "done"
        assert view["progress"]["line"] == channel_progress(5)
        assert delivered(settings) == Counter(USERS)
        log = await runtime.redis.hgetall(k.batch_log(notice_id))
        assert sorted(json.loads(v)["attempt"] for v in log.values()) == [1, 1, 2]
        assert await runtime.redis.zcard(k.retries) == 0
        assert await runtime.redis.xlen(stream) == 0
    finally:
        await runtime.close()


# alerts: once per idempotency key, and replicated


def alert(runtime: Runtime, **fields: Any) -> Any:
    data = {"title": "避難指示", "body": "避難してください。", "severity": "emergency", "areas": []}
    return alerts.validate({**data, **fields}, runtime.settings)


async def test_an_alert_repeated_with_its_idempotency_key_is_issued_once(
    runtime: Runtime,
) -> None:
    desk, k = runtime.alerts, runtime.keys
    first = await desk.issue(alert(runtime), "desk", idempotency=("key1", "body1"))
    assert (first.replay, first.conflict, first.replicated) == (False, False, True)
    again = await desk.issue(alert(runtime), "desk", idempotency=("key1", "body1"))
    assert again == alerts.Issued(first.id, "queued", replay=True)
    other = await desk.issue(alert(runtime, title="別"), "desk", idempotency=("key1", "body2"))
    assert (other.id, other.replay, other.conflict) == (first.id, False, True)
    assert await runtime.redis.zrange(k.notices, 0, -1) == [first.id.encode()]
    assert await runtime.redis.xlen(k.intake_urgent) == 1
    stored = json.loads(await runtime.redis.get(k.idempotency("key1")))
    assert stored == {"hash": "body1", "response": json.dumps({"id": first.id, "status": "queued"})}
    assert IDEMPOTENCY_TTL - 60 < await runtime.redis.ttl(k.idempotency("key1")) <= IDEMPOTENCY_TTL
    fresh = await desk.issue(alert(runtime), "desk")  # no key: a second alert
    assert fresh.id != first.id and not fresh.replay


async def test_an_update_and_an_all_clear_repeated_with_their_keys_answer_as_first(
    runtime: Runtime,
) -> None:
    desk, k = runtime.alerts, runtime.keys
    first = await desk.issue(alert(runtime), "desk")
    update = alert(runtime, supersedes=first.id, body="続報です。")
    issued = await desk.issue(update, "desk", idempotency=("u", "b"))
    update = alert(runtime, supersedes=first.id, body="続報です。")
    assert await desk.issue(update, "desk", idempotency=("u", "b")) == alerts.Issued(
        issued.id, "queued", replay=True
    )
    cancelled = await desk.cancel(issued.id, "desk", idempotency=("c", "b"))
    again = await desk.cancel(issued.id, "desk", idempotency=("c", "b"))
    assert (again.id, again.replay) == (cancelled.id, True)
    with pytest.raises(alerts.AlertRefused) as refused:  # a new request: the alert is over
        await desk.cancel(issued.id, "desk")
    assert (refused.value.status, refused.value.message) == (409, "the alert is cancelled")
    assert await runtime.redis.xlen(k.intake_urgent) == 3  # the alert, its update, all-clear


async def test_alert_answers_say_when_no_replica_confirmed_them(
    settings: Settings, runtime: Runtime
) -> None:
    approval = unreplicated(settings).model_copy(update={"alert_approval": True})
    desk = AlertDesk(runtime.redis, runtime.keys, approval)
    held = await desk.issue(alert(runtime), "desk-a", idempotency=("k", "b"))
    assert (held.status, held.replicated) == ("pending_approval", False)
    approved = await desk.approve(held.id, "desk-b")
    assert (approved.status, approved.replicated) == ("queued", False)
    other = await desk.issue(alert(runtime), "desk-a")
    withdrawn = await desk.cancel(other.id, "desk-b")
    assert (withdrawn.id, withdrawn.status, withdrawn.replicated) == (other.id, "cancelled", False)
    replicated = AlertDesk(runtime.redis, runtime.keys, settings)  # no replica asked for
    assert (await replicated.issue(alert(runtime), "desk-a")).replicated
    store = NoticeStore(runtime.redis, runtime.keys, min_replicas=1, replica_timeout=0.05)
    notice = intake.validate(announcement(), settings)
    assert not (await intake.enqueue(store, notice)).replicated  # as announcements are


# helpers: a LINE notice cut into batches, and a worker delivering it


async def subscribe(runtime: Runtime, users: list[str]) -> None:
    store = runtime.subscribers
    await store.save([store.validate({"channel": "line", "address": u}) for u in users])


async def queue_line_notice(settings: Settings, runtime: Runtime) -> str:
    await subscribe(runtime, USERS)
    raw = json.dumps(announcement(channels=["line"]))
    entry_id = (await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})).decode()
    rt = runtime
    dispatcher = Dispatcher(settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics)
    await dispatcher.handle(entry_id, {b"notice": raw.encode()})
    (notice,) = await runtime.notices.list()
    return str(notice["id"])


async def run_worker(settings: Settings, runtime: Runtime, notice_id: str) -> dict[str, Any]:
    context = Context(settings, runtime.redis, runtime.keys, runtime.metrics)
    channel = channels.create("line", context)
    worker = ChannelWorker(channel, settings, runtime.redis, runtime.keys, runtime.subscribers)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        return await finished(runtime, notice_id)
    finally:
        stop.set()
        await task


def delivered(settings: Settings) -> Counter[str]:
    seen: Counter[str] = Counter()
    for path in (settings.outbox_dir / "line").glob("*.json"):
        seen.update(json.loads(path.read_text())["to"])
    return seen
