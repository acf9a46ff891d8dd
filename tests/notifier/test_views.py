"""The console's rows are built from the stored views without Redis, and say why a channel
waits."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from notifier.config import Settings
from notifier.web.views import ChannelProgress, notice_row


def stored(kind: str = "announcement", **notice: Any) -> dict[str, Any]:
    bar = {"recipients": 5, "sent": 2, "failed": 1, "pending": 2}
    return {
        "id": "n1",
        "kind": kind,
        "status": "sending",
        "created": "2026-12-01T12:00:00+00:00",
        "notice": {"title": "t", **notice},
        "progress": {"line": dict(bar), "email": dict(bar), "x": {**bar, "pending": 0}},
    }


def test_a_row_holds_its_times_and_why_each_channel_waits(settings: Settings) -> None:
    night = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo: quiet hours
    quiet = settings.model_copy(update={"quiet_hours": "21:00-08:00", "quiet_channels": ["line"]})
    row = notice_row(
        stored(publish_at="2026-12-02T09:00:00+09:00"), quiet, {"email": "circuit open"}, night
    )
    assert row.created_at == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert row.scheduled is not None and row.scheduled.hour == 9
    assert row.progress["line"].waits == "夜間のため12月2日（水）午前8時00分まで保留"
    assert row.progress["email"] == ChannelProgress(5, 2, 1, 2, "一時停止中")
    assert row.progress["x"].waits == ""  # nothing pending: nothing waits
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.status = "done"  # type: ignore[misc]


def test_an_alert_never_waits_for_the_night(settings: Settings) -> None:
    night = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    quiet = settings.model_copy(update={"quiet_hours": "21:00-08:00", "quiet_channels": ["line"]})
    view = {**stored("alert", severity="emergency"), "state": "active", "superseded_by": None}
    row = notice_row(view, quiet, {}, night)
    assert (row.state, row.scheduled, row.progress["line"].waits) == ("active", None, "")
