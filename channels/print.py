"""Print: a notice joins the digest pool of each area it concerns.

Its rendered digest entry is written per area; the weekly large-print PDF is built
from the pool.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from channels.base import BaseChannel, Batch, Outcome
from channels.outbox import write_atomic
from notifier.models import Announcement
from notifier.render import Templates


class PrintChannel(BaseChannel):
    name: ClassVar[str] = "print"
    audience = "areas"
    batch_size: ClassVar[int] = 1

    translated = False  # the entry prints the やさしい日本語 version under the original

    @staticmethod
    def compose(templates: Templates, notice: Announcement, lang: str) -> dict[str, Any]:
        easy = notice.translations.get("easy")
        return {
            "html": templates.render("print/entry.html", notice, lang, easy=easy),
            "at": notice.effective_at.timestamp(),
        }

    async def _send(self, batch: Batch) -> Outcome:
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
