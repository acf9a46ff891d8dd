"""A worker process whose LINE sends never finish: the tests kill it mid-batch.

Run as ``python -m tests.hanging_worker PREFIX OUTBOX``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from channels.base import Batch, Context, Outcome
from channels.line import LineChannel
from notifier.config import load_settings
from notifier.runtime import Runtime
from notifier.worker import ChannelWorker
from tests.conftest import REDIS_URL, SECRET_KEY


class Hanging(LineChannel):
    async def _send(self, batch: Batch) -> Outcome:
        print("sending", flush=True)
        await asyncio.sleep(3600)
        return Outcome()


async def main(prefix: str, outbox: Path) -> None:
    settings = load_settings(
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        outbox_dir=outbox,
        secret_key=SECRET_KEY,
        quiet_hours=None,
    )
    rt = Runtime.open(settings)
    channel = Hanging(Context(settings, rt.redis, rt.keys, rt.metrics))
    worker = ChannelWorker(channel, settings, rt.redis, rt.keys, rt.subscribers, concurrency=2)
    await worker.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
