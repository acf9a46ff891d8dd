"""Print: a notice joins the digest pool of each area it concerns; an alert becomes a
flyer per affected area at once, and never joins a digest.

Its rendered digest entry is written per area; the weekly large-print PDF is built
from the pool. Flyers go to ``NOTIFIER_PRINT_DIR/alerts/``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from channels.base import BaseChannel, Batch, Outcome
from channels.outbox import write_atomic
from notifier.models import Alert, AnyNotice
from notifier.render import Templates


class PrintChannel(BaseChannel):
    name: ClassVar[str] = "print"
    audience = "areas"
    batch_size: ClassVar[int] = 1

    translated = False  # the entry prints the やさしい日本語 version under the original

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> dict[str, Any]:
        if isinstance(notice, Alert):
            ward = templates.settings.ward
            names = {a.code: a.name for a in ward.areas}
            return {
                "flyers": {
                    code: templates.render("print/flyer.html", notice, lang, area_name=name)
                    for code, name in names.items()
                }
            }
        easy = notice.translations.get("easy")
        return {
            "html": templates.render("print/entry.html", notice, lang, easy=easy),
            "at": notice.effective_at.timestamp(),
        }

    async def _send(self, batch: Batch) -> Outcome:
        if "flyers" in batch.content:
            folder = self.context.settings.print_dir / "alerts"
            for area in batch.areas:
                path = folder / f"{batch.notice_id}-{area}.html"
                await asyncio.to_thread(write_atomic, path, batch.content["flyers"][area].encode())
            return Outcome(sent=len(batch.areas))
        keys, redis = self.context.keys, self.context.redis
        html = batch.content["html"].encode()
        for area in batch.areas:
            path = self.context.outbox(self.name) / area / f"{batch.notice_id}.html"
            await asyncio.to_thread(write_atomic, path, html)
        async with redis.pipeline(transaction=True) as pipe:
            for area in batch.areas:
                pipe.zadd(keys.digest_pool(area), {batch.notice_id: batch.content["at"]})
            await pipe.execute()
        return Outcome(sent=len(batch.areas))
