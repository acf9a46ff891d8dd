"""What the console's lists render, built once from the stored views (notifier/store.py)
by pure functions: typed, frozen, never changed after they are made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.config import Settings
from notifier.when import local_time


@dataclass(frozen=True)
class ChannelProgress:
    """One channel's bar: how far it got, and why it waits if it does."""

    recipients: int
    sent: int
    failed: int
    pending: int
    waits: str = ""  # 一時停止中, or 夜間のため…まで保留


@dataclass(frozen=True)
class NoticeRow:
    """A notice (or an alert) in the console's list, or an alert on the desk."""

    id: str
    kind: str
    status: str
    notice: Mapping[str, Any]  # the notice's JSON as it was taken
    created_at: datetime
    scheduled: datetime | None
    state: str | None  # an alert's: pending, active, superseded, cancelled, all-clear …
    superseded_by: str | None
    progress: Mapping[str, ChannelProgress]


def notice_row(
    view: Mapping[str, Any], settings: Settings, paused: Mapping[str, str], now: datetime
) -> NoticeRow:
    """The row of a stored view (``NoticeStore.list``); ``paused``: the channels that hold
    their batches; ``now``: for the quiet hours, which hold an announcement's pushes."""
    when = view["notice"].get("publish_at")  # an announcement's schedule; alerts have none
    progress = {}
    for channel, p in view["progress"].items():
        waits = ""
        if channel in paused and p["pending"]:
            waits = "一時停止中"
        elif view["kind"] == "announcement" and p["pending"]:
            until = settings.quiet_until(channel, now)
            if until is not None:
                waits = f"夜間のため{local_time(until, settings.tz)}まで保留"
        progress[channel] = ChannelProgress(
            p["recipients"], p["sent"], p["failed"], p["pending"], waits
        )
    return NoticeRow(
        id=view["id"],
        kind=view["kind"],
        status=view["status"],
        notice=view["notice"],
        created_at=datetime.fromisoformat(view["created"]),
        scheduled=datetime.fromisoformat(when) if when else None,
        state=view.get("state"),
        superseded_by=view.get("superseded_by"),
        progress=progress,
    )
