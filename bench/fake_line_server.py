"""The tests' fake LINE server, in a process of its own, for benchmarks.

It holds every endpoint to LINE's published rate table (``tests.fake_line.LINE_LIMITS``:
multicast 200 requests in any second, push and reply 2,000, broadcast and narrowcast 60
an hour); ``--rate`` overrides the multicast limit alone.

Prints one JSON line ``{"url": …, "stats": …}`` once it serves; ``GET <stats>`` answers
what it accepted: request count, recipients, and the wall-clock times of the first and
last accepted multicast (``?contains=TEXT``: of those whose first message's altText
contains TEXT), every response's status, and the requests its limits refused (path →
count); ``?brief=1``: the multicast count alone.

Run: ``python bench/fake_line_server.py`` (LINE's limits) or ``--rate 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web

from tests.fake_line import FakeLine


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--rate", type=float, default=None, help="multicast limit /s (default: LINE's, 200)"
    )
    p.add_argument("--token", default="bench-token")
    p.add_argument("--schema-sample", type=int, default=100)
    args = p.parse_args()
    fake = FakeLine(token=args.token, rate=args.rate, schema_sample=args.schema_sample)
    await fake.start()

    async def stats(request: web.Request) -> web.Response:
        if request.query.get("brief"):  # polled during a fan-out: the count alone, cheaply
            return web.json_response({"multicasts": len(fake.multicasts)})
        multicasts = fake.multicasts
        wanted = request.query.get("contains")
        if wanted:
            multicasts = [m for m in multicasts if wanted in m["messages"][0].get("altText", "")]
        walls = [m["wall"] for m in multicasts]
        statuses: dict[str, int] = {}
        for _, status in fake.responses:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        return web.json_response(
            {
                "multicasts": len(multicasts),
                "recipients": sum(len(m["to"]) for m in multicasts),
                "pushes": len(fake.pushes),
                "first": min(walls, default=None),
                "last": max(walls, default=None),
                "statuses": statuses,
                "refused": dict(fake.refused),
                "limits": fake.limits,
            }
        )

    app = web.Application()
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(json.dumps({"url": fake.url, "stats": f"http://{host}:{port}/stats"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
