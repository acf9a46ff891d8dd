"""Print: a notice joins the digest pool of each area it concerns; an alert becomes a
flyer per affected area at once, and never joins a digest.

Its rendered digest entry is written per area; the weekly large-print PDF is built
from the pool. Flyers go to ``NOTIFIER_PRINT_DIR/alerts/``.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from pathlib import Path
from typing import TypedDict, cast

import segno

from channels.base import BaseChannel, Batch, Context, Outcome, log
from channels.outbox import write_atomic
from notifier.channel_registry import REGISTRY
from notifier.logs import event
from notifier.models import Alert, AnyNotice
from notifier.pdf import PdfMaker, save
from notifier.render import Templates
from notifier.subscribers import SubscriberStore

FLYER_SHELTERS = 3  # listed with a QR code each; the rest are on the public page
URGENT_LEVEL = 3  # from 高齢者等避難 up, residents registered by post get a sheet at once


class Flyers(TypedDict):
    flyers: dict[str, str]  # area code → the flyer's HTML
    urgent: bool  # 警戒レベル3 or above: urgent mailing sheets too (see _mail)


class Entry(TypedDict):
    html: str  # the digest entry
    at: float  # when the notice took effect: the digest's order


class PrintChannel(BaseChannel[Flyers | Entry]):
    """An alert's flyers, or an announcement's digest entry (by the batch's kind)."""

    spec = REGISTRY["print"]

    translated = False  # the entry prints the やさしい日本語 version under the original

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.pdf = PdfMaker()
        self._subscribers = SubscriberStore(context.redis, context.keys, context.settings)
        self._templates: Templates | None = None

    async def _flyers(self, batch: Batch, content: Flyers) -> Outcome:
        """An alert's flyer for each affected area (a page, in the largest type that fits
        it), handed to the printer when
        NOTIFIER_PRINT_COMMAND is set (a printer's failure is logged, never retried:
        the flyer is on disk either way)."""
        settings = self.context.settings
        folder = settings.print_dir / "alerts"
        printed: dict[str, int] = {}
        for area in batch.areas:
            path = folder / f"{batch.notice_id}-{area}.pdf"
            await save(await self.pdf.fitted(content["flyers"][area]), path)
            if settings.print_command:
                printed[area] = await _print(settings.print_command, path)
        mailed = await self._mail(batch) if content.get("urgent") else {}
        failed = {a: code for a, code in printed.items() if code != 0}
        if failed:
            event(log, "flyer.print_failed", logging.WARNING, notice=batch.notice_id, exit=failed)
        meta: dict[str, object] = {"printed": printed} if printed else {}
        if mailed:
            meta["mailed"] = mailed
        return Outcome(sent=len(batch.areas), meta=meta)

    async def _mail(self, batch: Batch) -> dict[str, int]:
        """An alert of 警戒レベル3 or above: for each area with residents registered by
        post, one PDF of urgent mailing sheets (至急, their address for a window envelope),
        to go out with the area's flyer; how many sheets each area's has. The residents
        are read now, not when the alert was planned: their addresses never enter a
        stream."""
        settings = self.context.settings
        templates = self._templates = self._templates or Templates(settings)
        stored = await self.context.redis.hget(self.context.keys.notice(batch.notice_id), "notice")
        if stored is None:
            return {}
        notice = Alert.model_validate_json(stored, context={"ward": settings.ward})
        folder = settings.print_dir / "alerts"
        mailed: dict[str, int] = {}
        for area in batch.areas:
            residents = await self._subscribers.mailing_list(area)
            if not residents:
                continue
            html = templates.render(
                "print/urgent_mail.html",
                notice,
                "ja",
                residents=residents,
                area_name=settings.ward.area(area).label("ja"),
            )
            await save(await self.pdf.make(html), folder / f"{batch.notice_id}-{area}-mail.pdf")
            mailed[area] = len(residents)
        return mailed

    async def warm(self) -> None:
        """Start the PDF process and load its fonts now: the first flyer of a disaster
        should not wait for them."""
        await self.pdf.start()

    async def close(self) -> None:
        self.pdf.close()

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> Flyers | Entry:
        if isinstance(notice, Alert):
            # the notice's link, or else where a resident subscribes for the updates
            link = notice.url or f"{templates.settings.public_url}/subscribe"
            code = segno.make(link, error="m").svg_data_uri()
            level = notice.level or 0
            listed = [] if notice.type == "cancel" else notice.shelters[:FLYER_SHELTERS]
            shelters = [(s, segno.make(s.map, error="m").svg_data_uri()) for s in listed]
            return {
                "urgent": level >= URGENT_LEVEL and notice.type != "cancel",
                "flyers": {
                    area.code: templates.render(
                        "print/flyer.html",
                        notice,
                        lang,
                        area_name=area.label(lang),
                        link=link,
                        qr=code,
                        shelters=shelters,
                    )
                    for area in templates.settings.ward.areas
                },
            }
        easy = notice.translations.get("easy")
        qr = segno.make(notice.url, error="m").png_data_uri(scale=4) if notice.url else None
        return {
            "html": templates.render("print/entry.html", notice, lang, easy=easy, qr=qr),
            "at": notice.effective_at.timestamp(),
        }

    async def _send(self, batch: Batch) -> Outcome:
        if batch.kind == "alert":
            return await self._flyers(batch, cast("Flyers", batch.content))
        entry = cast("Entry", batch.content)
        keys, redis = self.context.keys, self.context.redis
        html = entry["html"].encode()
        for area in batch.areas:
            path = self.context.outbox(self.name) / area / f"{batch.notice_id}.html"
            await asyncio.to_thread(write_atomic, path, html)
        async with redis.pipeline(transaction=True) as pipe:
            for area in batch.areas:
                pipe.zadd(keys.digest_pool(area), {batch.notice_id: entry["at"]})
            await pipe.execute()
        return Outcome(sent=len(batch.areas))


async def _print(command: str, path: Path) -> int:
    """Run the print command (``lp -d ward-office``) with the file; its exit status."""
    process = await asyncio.create_subprocess_exec(
        *shlex.split(command),
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()
