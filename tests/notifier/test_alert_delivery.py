"""Alerts in delivery: ahead of any routine backlog, on every channel that works while
another is down, and through quiet hours that hold routine pushes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notifier import alerts
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import (
    channel_progress,
    enqueued,
    finished,
    line_settings,
    make_settings,
    wait_for,
)
from tests.fake_line import FakeLine
from tests.smtp_sink import SmtpSink

USERS = [f"U{i:032x}" for i in range(24)]
ALERT_TITLE = "避難指示（緊急）"


def alert(**fields: Any) -> dict[str, Any]:
    return {
        "title": ALERT_TITLE,
        "body": "直ちに避難してください。",
        "severity": "emergency",
        "areas": [],
        **fields,
    }


async def issue(runtime: Runtime, **fields: Any) -> str:
    issued = await runtime.alerts.issue(alerts.validate(alert(**fields), runtime.settings), "desk")
    return issued.id


async def routine(runtime: Runtime, **fields: Any) -> str:
    return await enqueued(runtime, **fields)


async def subscribe(runtime: Runtime, channel: str, addresses: list[str]) -> None:
    store = runtime.subscribers
    await store.save([store.validate({"channel": channel, "address": a}) for a in addresses])


def is_alert(request: dict[str, Any]) -> bool:
    return ALERT_TITLE in request["messages"][0]["altText"]


async def test_an_alert_overtakes_a_routine_backlog_on_line(
    tmp_path: Path, prefix: str, fake_line: FakeLine
) -> None:
    settings = line_settings(
        tmp_path, prefix, fake_line.url, line_batch_size=1, worker_concurrency=1
    )
    fake_line.response_delay = 0.02  # a backlog that takes a while to drain
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["line"])
    runtime = Runtime.open(settings)
    try:
        await subscribe(runtime, "line", USERS)
        routine_id = await routine(runtime, channels=["line"], areas=[])
        await service.start()
        await wait_for(lambda: _at_least(fake_line.multicasts, 3))
        sent_before = len(fake_line.multicasts)
        alert_id = await issue(runtime, channels=["line"])
        for notice_id in (alert_id, routine_id):
            assert (await finished(runtime, notice_id))["status"] == "done"
    finally:
        await service.stop()
        await runtime.close()
    order = [is_alert(r) for r in fake_line.multicasts]
    first, last = order.index(True), len(order) - 1 - order[::-1].index(True)
    # at most the one routine batch in hand when the alert came goes before it ...
    assert first <= sent_before + 1, order
    # ... then the alert's batches, with no new routine batch started among them
    assert order[first : last + 1].count(False) <= 1, order
    assert order.count(False) == len(USERS) and order[-1] is False  # the backlog was real
    received = Counter(u for r in fake_line.multicasts for u in r["to"])
    assert received == Counter(dict.fromkeys(USERS, 2))  # each user: the notice and the alert


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_a_failing_channel_opens_its_circuit_while_the_others_deliver(
    tmp_path: Path, prefix: str, fake_line: FakeLine
) -> None:
    mailboxes = [f"resident{i}@example.jp" for i in range(6)]
    with SmtpSink() as sink:
        settings = line_settings(
            tmp_path,
            prefix,
            fake_line.url,
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_starttls=False,
            mail_from="bousai@city.nerima.example.jp",
            breaker_failures=3,
            breaker_seconds=1.0,
            max_attempts=10,
        )
        fake_line.fail(*[503] * 7)  # LINE answers 503 to the next seven requests
        service = Service(settings, parts=["dispatch", "workers"], channel_names=["line", "email"])
        runtime = Runtime.open(settings)
        try:
            await subscribe(runtime, "line", USERS[:4])
            await subscribe(runtime, "email", mailboxes)
            await service.start()
            alert_id = await issue(runtime, channels=["line", "email"])

            async def email_done_line_held() -> dict[str, Any] | None:
                found = await runtime.notices.get(alert_id)
                assert found is not None
                line, email = found["progress"]["line"], found["progress"]["email"]
                open_ = "circuit open" in line.get("paused", "")
                return found if email["sent"] == len(mailboxes) and open_ else None

            during = await wait_for(email_done_line_held)
            assert during["progress"]["line"]["sent"] == 0
            assert "circuit open" in (await runtime.notices.paused())["line"]
            result = await finished(runtime, alert_id)
        finally:
            await service.stop()
            await runtime.close()
        assert sorted(rcpt for e in sink.envelopes for rcpt in e.rcpt_tos) == sorted(mailboxes)
    assert result["progress"]["line"] == channel_progress(4)
    assert Counter(u for r in fake_line.multicasts for u in r["to"]) == Counter(
        dict.fromkeys(USERS[:4], 1)
    )
    failures = [status for path, status in fake_line.responses if "multicast" in path]
    assert failures.count(503) == 7  # the circuit kept the tries down: no more than queued


async def test_quiet_hours_hold_routine_line_pushes_but_never_alerts(
    tmp_path: Path, prefix: str
) -> None:
    settings = make_settings(tmp_path, prefix, quiet_hours="21:00-08:00")
    night = datetime(2026, 11, 26, 23, 30, tzinfo=settings.tz)
    morning = datetime(2026, 11, 27, 8, 0, tzinfo=settings.tz)
    assert settings.quiet_until("line", night) == morning
    assert settings.quiet_until("line", morning) is None
    assert settings.quiet_until("email", night) is None  # only LINE pushes wait by default
    assert settings.quiet_until("line", datetime(2026, 11, 27, 7, 59, tzinfo=UTC)) is None

    clock = {"now": night}
    service = Service(settings, parts=["dispatch", "workers"], channel_names=["line"])
    runtime = Runtime.open(settings)
    try:
        await subscribe(runtime, "line", USERS[:3])
        await service.start()
        for worker in service.workers:
            worker.now = lambda: clock["now"]
        routine_id = await routine(runtime, channels=["line"], areas=[])
        alert_id = await issue(runtime, channels=["line"])
        assert (await finished(runtime, alert_id))["progress"]["line"]["sent"] == 3
        held = await runtime.notices.get(routine_id)
        assert held is not None and held["progress"]["line"]["pending"] == 3
        clock["now"] = morning
        assert (await finished(runtime, routine_id))["progress"]["line"]["sent"] == 3
    finally:
        await service.stop()
        await runtime.close()
    line_files = sorted(p.name for p in (settings.outbox_dir / "line").glob("*.json"))
    assert len(line_files) == 2
