"""The printed large-print digest: one PDF per area and week, for residents who are offline.

An area's digest holds the announcements of the period that joined its pool (whole-ward
notices join every area's), grouped by topic, newest first, with the period's alerts on
the first page; a cover with the ward's name, the period in Japanese dates with the era,
a table of contents and the phone number (or, for a few notices that fit it, the notices
themselves on that one page). Residents registered for print get a mailing
copy with their address placed for a window envelope.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from apscheduler.triggers.cron import CronTrigger
from redis.asyncio import Redis

from notifier.config import Settings
from notifier.keys import Keys
from notifier.logs import event
from notifier.models import Alert, parse_notice
from notifier.pdf import PdfMaker, save
from notifier.render import prefix as alert_prefix
from notifier.runtime import Runtime

log = logging.getLogger("notifier.digest")

REIWA = date(2019, 5, 1)
FILES_A_CALL = 50  # PDF files a PDF process makes from one layout of an area's notices
FOLDED_AT_MOST = 3  # notices a digest may print on its cover's page, in place of contents


def era_date(day: date, with_year: bool = True) -> str:
    """2026-11-23 → 令和8年11月23日 (the era the ward writes dates in)."""
    if day < REIWA:
        raise ValueError("dates before 令和 are not written here")
    year = day.year - 2018
    era_year = "元" if year == 1 else str(year)
    prefix = f"令和{era_year}年" if with_year else ""
    return f"{prefix}{day.month}月{day.day}日"


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive, local time
    end: datetime  # exclusive

    @property
    def label(self) -> str:
        """The ISO week the period starts in: 2026-W48 (the digest's folder)."""
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def text(self) -> str:
        """令和8年11月23日〜11月29日."""
        last = (self.end - timedelta(microseconds=1)).date()
        first = self.start.date()
        return f"{era_date(first)}〜{era_date(last, with_year=last.year != first.year)}"


def week_of(moment: datetime) -> Period:
    """The Monday-to-Monday week holding ``moment`` (in its own time zone)."""
    monday = (moment - timedelta(days=moment.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return Period(monday, monday + timedelta(days=7))


def week_before(moment: datetime) -> Period:
    this = week_of(moment)
    return Period(this.start - timedelta(days=7), this.start)


def last_fire(cron: str, settings: Settings, now: datetime) -> datetime | None:
    """When ``cron`` last fired at or before ``now`` (within the past eight days)."""
    trigger = CronTrigger.from_crontab(cron, timezone=settings.tz)
    moment: datetime | None = trigger.get_next_fire_time(None, now - timedelta(days=8))
    last = None
    while moment is not None and moment <= now:
        last = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return last


class DigestBuilder:
    def __init__(self, runtime: Runtime, pdf: PdfMaker) -> None:
        self.settings = runtime.settings
        self.redis = runtime.redis
        self.keys = runtime.keys
        self.templates = runtime.templates
        self.subscribers = runtime.subscribers
        self.pdf = pdf

    async def build(self, period: Period, areas: list[str] | None = None) -> list[Path]:
        """Every area's digest (and mailing copies) for ``period``; the files written.
        The areas are laid out side by side, as many at once as the PDF pool has processes."""
        chosen = areas or self.settings.ward.area_codes
        alerts = await self._alerts(period)  # once: each area takes its own from them
        done = await asyncio.gather(*(self._area(area, period, alerts) for area in chosen))
        return [path for paths in done for path in paths]

    async def _area(
        self, area: str, period: Period, alerts: list[tuple[Alert, dict[str, Any]]]
    ) -> list[Path]:
        folder = self.settings.print_dir / period.label
        sections = await self._sections(area, period)
        mine = [view for alert, view in alerts if not alert.areas or area in alert.areas]
        if not sections and not mine:  # nothing to print: no paper
            event(log, "digest.empty", area=area, week=period.label)
            return []
        values = self._values(area, period, sections, mine)
        body = self.templates.page("print/digest.html", **values) if sections else None
        count = sum(len(s["entries"]) for s in sections)
        foldable = 0 < count <= FOLDED_AT_MOST

        def cover(resident: dict[str, str] | None, folded: bool = False) -> str:
            return self.templates.page(
                "print/cover.html", **values, resident=resident, folded=folded
            )

        # the area's digest, then the mailing copies (a file each, or one for the print shop)
        files: list[tuple[Path, list[dict[str, str] | None]]] = [(folder / f"{area}.pdf", [None])]
        residents = await self.subscribers.mailing_list(area)
        if residents and self.settings.print_mail == "merged":
            files.append((folder / "mail" / f"{area}.pdf", [*residents]))
        elif residents:
            files += [(folder / "mail" / f"{area}-{r['id']}.pdf", [r]) for r in residents]
        written = []
        for start in range(0, len(files), FILES_A_CALL):  # the notices laid out once a call
            chunk = files[start : start + FILES_A_CALL]
            pdfs = await self.pdf.booklets(
                body,
                [[cover(r) for r in copies] for _, copies in chunk],
                [[cover(r, folded=True) for r in copies] for _, copies in chunk]
                if foldable
                else None,
            )
            for (path, _), pdf in zip(chunk, pdfs, strict=True):
                written.append(await save(pdf, path))
        event(log, "digest.built", area=area, week=period.label, notices=count)
        return written

    def _values(
        self, area: str, period: Period, sections: list[dict[str, Any]], alerts: list[Any]
    ) -> dict[str, Any]:
        ward = self.settings.ward
        return {
            "area_name": ward.area(area).name,
            "period": period.text,
            "sections": sections,
            "alerts": alerts,
            "font_size": self.settings.print_font_size,
            "phone": ward.phone,
        }

    async def _sections(self, area: str, period: Period) -> list[dict[str, Any]]:
        """The topic sections of an area's digest, each with its entries, newest first."""
        start, end = period.start.timestamp(), period.end.timestamp()
        pool = cast(
            "list[bytes]",
            await self.redis.zrevrangebyscore(self.keys.digest_pool(area), f"({end}", start),
        )
        ids = [raw_id.decode() for raw_id in pool]
        async with self.redis.pipeline(transaction=False) as pipe:
            for notice_id in ids:
                pipe.hget(self.keys.notice(notice_id), "notice")
                pipe.hget(self.keys.rendered(notice_id), "print:ja")
            replies = await pipe.execute()
        ward = self.settings.ward
        by_topic: dict[str, list[dict[str, Any]]] = {code: [] for code in ward.topic_codes}
        for i, notice_id in enumerate(ids):
            stored, rendered = replies[2 * i], replies[2 * i + 1]
            if stored is None or rendered is None:
                continue
            record = json.loads(stored)
            topic = record["topics"][0] if record.get("topics") else ward.topic_codes[-1]
            by_topic.setdefault(topic, []).append(
                {"id": notice_id, "title": record["title"], "html": json.loads(rendered)["html"]}
            )
        return [
            {"code": code, "name": ward.topic(code).name, "entries": entries}
            for code, entries in by_topic.items()
            if entries
        ]

    async def _alerts(self, period: Period) -> list[tuple[Alert, dict[str, Any]]]:
        """The alerts issued in the period (drills are not printed), each with what the
        digest shows of it."""
        start, end = period.start.timestamp(), period.end.timestamp()
        ids = cast(
            "list[bytes]", await self.redis.zrevrangebyscore(self.keys.notices, f"({end}", start)
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hmget(self.keys.notice(raw_id.decode()), "kind", "notice")
            records = await pipe.execute()
        found = []
        for kind, stored in records:
            if kind != b"alert" or stored is None:
                continue
            alert = parse_notice(json.loads(stored), {"ward": self.settings.ward, "now": None})
            if not isinstance(alert, Alert) or alert.drill:
                continue
            view = {
                "marks": alert_prefix(alert, "ja"),
                "title": alert.title,
                "body": alert.body,
                "issued": alert.effective_at.astimezone(self.settings.tz),
            }
            found.append((alert, view))
        return found


async def build_due(builder: DigestBuilder, redis: Redis, keys: Keys, now: datetime) -> list[Path]:
    """Build the digest that ``NOTIFIER_DIGEST_CRON`` last called for, unless it was built:
    on schedule, or when the service comes back after being down at that hour."""
    settings = builder.settings
    fired = last_fire(settings.digest_cron, settings, now.astimezone(settings.tz))
    if fired is None:
        return []
    period = week_before(fired)
    # one builder per week, whatever the number of schedulers
    if not await redis.set(keys.digest_built(period.label), now.isoformat(), nx=True):
        return []
    try:
        return await builder.build(period)
    except BaseException:
        await redis.delete(keys.digest_built(period.label))  # try again next time
        raise
