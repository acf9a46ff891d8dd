"""The dispatcher: entries other systems put on the intake stream, audiences, batches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.line import LineChannel
from notifier.dispatch import Dispatcher
from notifier.models import parse_notice
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.states import BatchEntry
from tests.conftest import Api, announcement, wait_for


def dispatcher(runtime: Runtime) -> Dispatcher:
    rt = runtime
    return Dispatcher(rt.settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics)


async def line_notice_for(runtime: Runtime, n: int) -> tuple[list[str], str, str]:
    """n LINE subscribers, and a notice for all of them on the intake stream."""
    users = [f"U{i:032x}" for i in range(n)]
    await runtime.subscribers.save(
        [runtime.subscribers.validate({"channel": "line", "address": u}) for u in users]
    )
    raw = json.dumps(announcement(channels=["line"]))
    entry = (await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})).decode()
    return users, raw, entry


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not a JSON object"),
        ("[" * 5000 + "]" * 5000, "nests deeper than 32 levels"),  # once a RecursionError
        ('{"title": NaN}', "NaN, which is not JSON"),
        ('["a list"]', "announcement"),
        (json.dumps(announcement(areas=["shibuya"])), "unknown area 'shibuya'"),
        (json.dumps(announcement(kind="memo")), "kind"),
        (json.dumps({**announcement(), "body": ""}), "body"),
    ],
)
async def test_invalid_entries_move_to_rejected_with_their_reason(
    api: Api, runtime: Runtime, tokens: dict[str, str], raw: str, reason: str
) -> None:
    entry_id = await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})

    async def rejected() -> list[Any]:
        _, body = await api.call("GET", "/api/intake/rejected", tokens["staff"])
        return list(body["rejected"])

    (item,) = await wait_for(rejected)
    assert item["entry"] == entry_id.decode()
    assert reason in item["reason"]
    assert item["notice"] == raw
    assert await runtime.redis.xlen(runtime.keys.intake) == 0
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


async def test_an_entry_without_the_notice_field_is_rejected(
    runtime: Runtime, service: Service
) -> None:
    await runtime.redis.xadd(runtime.keys.intake, {"title": "no envelope"})
    await wait_for(lambda: runtime.redis.xlen(runtime.keys.rejected))
    ((_, fields),) = await runtime.redis.xrange(runtime.keys.rejected)
    assert b"not a JSON object" in fields[b"reason"]


async def test_a_valid_entry_from_another_system_is_delivered(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Any
) -> None:
    raw = json.dumps({**announcement(channels=["x"]), "kind": "announcement"})
    await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})

    async def listed() -> list[Any]:
        _, body = await api.call("GET", "/api/announcements?status=done", tokens["staff"])
        return list(body["announcements"])

    (item,) = await wait_for(listed)
    assert item["progress"]["x"]["sent"] == 1
    assert (settings.outbox_dir / "x" / f"{item['id']}.json").exists()


async def test_a_redelivered_entry_is_dispatched_once(runtime: Runtime) -> None:
    """A dispatcher that died after queueing but before acknowledging: the retry is a no-op."""
    await runtime.subscribers.save(
        [runtime.subscribers.validate({"channel": "line", "address": "U" + "1" * 32})]
    )
    raw = json.dumps(announcement(channels=["line"]))
    entry_id = (await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})).decode()
    d = dispatcher(runtime)
    await d.handle(entry_id, {b"notice": raw.encode()})
    await d.handle(entry_id, {b"notice": raw.encode()})
    stream = runtime.keys.delivery("line", "normal")
    assert await runtime.redis.xlen(stream) == 1
    (notice,) = await runtime.notices.list()
    assert notice["status"] == "dispatching"
    assert notice["progress"]["line"]["recipients"] == 1


async def test_an_entry_reusing_another_notices_id_is_rejected(runtime: Runtime) -> None:
    d = dispatcher(runtime)
    first = json.dumps({**announcement(channels=["x"]), "id": "ward-0001"})
    second = json.dumps({**announcement(channels=["x"], title="別件"), "id": "ward-0001"})
    for raw in (first, second):
        entry = (await runtime.redis.xadd(runtime.keys.intake, {"notice": raw})).decode()
        await d.handle(entry, {b"notice": raw.encode()})
    ((_, fields),) = await runtime.redis.xrange(runtime.keys.rejected)
    assert b"already used" in fields[b"reason"]
    found = await runtime.notices.get("ward-0001")
    assert found is not None and found["notice"]["title"] == announcement()["title"]


async def test_large_audiences_are_cut_into_batches_of_the_configured_size(
    runtime: Runtime,
) -> None:
    users, raw, entry = await line_notice_for(runtime, 1203)
    await dispatcher(runtime).handle(entry, {b"notice": raw.encode()})
    entries = await runtime.redis.xrange(runtime.keys.delivery("line", "normal"))
    jobs = [BatchEntry.from_fields(fields) for _, fields in entries]
    assert [len(j.recipients) for j in jobs] == [500, 500, 203]
    assert [j.n for j in jobs] == [0, 1, 2]
    ids = [sid for j in jobs for sid in j.recipients]
    assert len(set(ids)) == 1203
    wire = b" ".join(value for _, fields in entries for value in fields.values())
    assert not any(u.encode() in wire for u in users[:50])  # ids, not LINE user ids


async def test_a_dispatcher_that_dies_while_cutting_is_taken_over_without_loss_or_double(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, raw, entry = await line_notice_for(runtime, 1203)
    first = dispatcher(runtime)
    real_cut = first.cutter._call  # one call of the cut script
    calls = 0

    async def dies_after_one(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RedisConnectionError("Redis went away mid-cut")
        return await real_cut(*args, **kwargs)

    monkeypatch.setattr(first.cutter, "_call", dies_after_one)
    with pytest.raises(RedisConnectionError):
        await first.handle(entry, {b"notice": raw.encode()})
    stream = runtime.keys.delivery("line", "normal")
    assert await runtime.redis.xlen(stream) == 1  # the first batch went out at once
    assert await runtime.redis.xlen(runtime.keys.intake) == 1  # not acknowledged
    (notice,) = await runtime.notices.list()
    assert notice["status"] == "dispatching"

    await dispatcher(runtime).handle(entry, {b"notice": raw.encode()})  # the one that reclaims
    jobs = [BatchEntry.from_fields(f) for _, f in await runtime.redis.xrange(stream)]
    ids = [sid for job in jobs for sid in job.recipients]
    assert len(ids) == len(set(ids)) == 1203
    assert sorted(job.n for job in jobs) == [0, 1, 2]
    assert await runtime.redis.xlen(runtime.keys.intake) == 0
    assert [k async for k in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}aud:*")] == []


async def test_an_alert_written_straight_onto_the_intake_stream_is_refused(
    runtime: Runtime,
) -> None:
    """Alerts come through the emergency desk's API (roles, approval, audit), never around it."""
    raw = json.dumps(
        {"kind": "alert", "title": "t", "body": "b", "severity": "emergency", "areas": []}
    )
    for stream in (runtime.keys.intake, runtime.keys.intake_urgent):
        entry = (await runtime.redis.xadd(stream, {"notice": raw})).decode()
        await dispatcher(runtime).handle(entry, {b"notice": raw.encode()}, stream)
    rejected = await runtime.redis.xrange(runtime.keys.rejected)
    assert [f[b"reason"] for _, f in rejected] == [
        b"alerts are issued through POST /api/alerts"
    ] * 2
    assert await runtime.redis.zcard(runtime.keys.notices) == 0


def test_the_channels_templates_are_compiled_at_start_not_when_an_alert_waits(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = runtime.templates.env
    assert env.loader is not None
    loaded: list[str] = []
    read = env.loader.get_source

    def get_source(environment: Any, name: str) -> Any:
        loaded.append(name)
        return read(environment, name)

    monkeypatch.setattr(env.loader, "get_source", get_source)
    dispatcher(runtime)
    assert {"line/announcement.json", "x/announcement.txt", "print/flyer.html"} <= set(loaded)
    assert "email/announcement.html" in loaded
    before = len(loaded)
    notice = parse_notice(
        {**announcement(channels=["line"]), "id": "n1", "received_at": "2026-11-26T09:00:00Z"},
        context={"ward": runtime.settings.ward, "now": None},
    )
    LineChannel.compose(runtime.templates, notice, "ja")
    assert len(loaded) == before  # nothing read or compiled while a notice waits
