"""What the service says of itself: alive (/healthz), ready (/readyz), its metrics."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from notifier.channel_registry import REGISTRY
from notifier.keys import LANES
from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.web.http import RUNTIME, json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        await runtime.redis.ping()
        paused = await runtime.notices.paused()
    except (RedisError, OSError):
        return json_response({"status": "unavailable", "redis": "down"}, status=503)
    body: dict[str, Any] = {"status": "ok", "redis": "up"}
    if paused:  # still ready: the other channels deliver, and the held batches wait
        body["paused"] = paused
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    await refresh_snapshot(runtime)
    body = generate_latest(runtime.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def refresh_snapshot(runtime: Runtime) -> None:
    """Read the figures every process shares from Redis."""
    k, redis, snap = runtime.keys, runtime.redis, runtime.metrics.snapshot
    notices: dict[tuple[str, str], int] = {}
    ids = cast("list[bytes]", await redis.zrange(k.notices, 0, -1))
    async with redis.pipeline(transaction=False) as pipe:
        for notice_id in ids:
            pipe.hmget(k.notice(notice_id.decode()), "kind", "status")
        for kind, status in await pipe.execute():
            if kind and status:
                label = (kind.decode(), status.decode())
                notices[label] = notices.get(label, 0) + 1
    snap.notices = notices
    stats = await redis.hgetall(k.stats)
    snap.deliveries = {
        cast("tuple[str, str]", tuple(as_text(f).split(":", 1))): int(v) for f, v in stats.items()
    }
    streams = [k.intake, k.intake_urgent] + [
        k.delivery(c, lane) for c in REGISTRY for lane in LANES
    ]
    lag: dict[str, int] = {}
    pending: dict[str, int] = {}
    for stream in streams:
        if not await redis.exists(stream):
            continue
        for group in await redis.xinfo_groups(stream):
            name = stream.removeprefix(k.prefix)
            lag[name] = lag.get(name, 0) + int(group.get("lag") or 0)
            pending[name] = pending.get(name, 0) + int(group.get("pending") or 0)
    snap.stream_lag, snap.stream_pending = lag, pending


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
