"""The aiohttp application: middlewares for errors and auth, health, readiness, metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from notifier.keys import LANES
from notifier.logs import event
from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.tokens import Token

log = logging.getLogger("notifier.web")
RUNTIME = web.AppKey("runtime", Runtime)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with Japanese left readable."""
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "fields": self.fields}}
        response = json_response(body, status=self.status)
        if self.status == 503:  # a restart or a failover: worth trying again in a second
            response.headers["Retry-After"] = "1"
        response.headers.update(self.headers)
        return response


class Refused(Exception):
    """A page's own answer to a refused request (the console's HTML, not the API's JSON)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.reason)
        self.response = response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON in one shape; nothing internal leaks."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as e:
        status = e.status
        return e.response()
    except Refused as e:
        status = e.response.status
        return e.response
    except web.HTTPRequestEntityTooLarge:
        status = 413
        return ApiError(413, "too_large", "the request body is too large").response()
    except web.HTTPException as e:
        status = e.status
        if e.status < 400:
            raise
        return ApiError(e.status, e.reason.lower().replace(" ", "_"), e.reason).response()
    except RedisError as e:
        status = 503
        event(log, "http.redis_error", logging.ERROR, path=request.path, error=repr(e))
        return ApiError(503, "unavailable", "the queue is not answering; try again").response()
    except Exception as e:
        event(log, "http.fault", logging.ERROR, route=request.path, error=type(e).__name__)
        return ApiError(500, "internal", "something went wrong on our side").response()
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[RUNTIME].metrics.http_requests.labels(name, str(status)).inc()
        event(
            log,
            "http.request",
            method=request.method,
            route=name,
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The body as a form (read once; aiohttp keeps it); 400 if it is not one."""
    try:
        return await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # no boundary, bad parts or charset
        raise ApiError(400, "bad_form", "the body is not a form this page sends") from None


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if the request has one."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    ok = scheme.lower() == "bearer" and credential and visible_ascii(credential)
    return credential if ok else None


def visible_ascii(value: str) -> bool:
    """Whether a header's value is printable ASCII, as tokens and keys are (bytes a client
    sent outside it reach us as lone surrogates, which nothing can encode)."""
    return value.isascii() and value.isprintable()


async def require(request: web.Request, role: str, action: str) -> Token:
    """The caller's token, if it grants ``role``: else 401 (who are you?) or 403 (not you).
    Routes call it before they read the body; ``action`` names the refusal in the audit."""
    credential = bearer(request)
    if credential is None:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
    token = await request.app[RUNTIME].tokens.check(credential)
    if token is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked token")
    await permit(request, token, role, action)
    return token


async def permit(request: web.Request, token: Token, role: str, action: str) -> None:
    """403, recorded in the audit log (who, what, why), unless ``token`` grants ``role``."""
    if not token.may(role):
        target = request.match_info.get("id", "-")
        await audit(request, token, action, target, "forbidden", needs=role)
        raise ApiError(403, "forbidden", f"this needs the {role} role")


async def audit(
    request: web.Request, who: Token, action: str, target: str, outcome: str, **detail: Any
) -> None:
    """Put a state-changing action in the audit log: who, what, when, from where, outcome."""
    await request.app[RUNTIME].audit.record(
        who.name, who.role, action, target, outcome, request.remote or "unknown", **detail
    )


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
    from channels import REGISTRY

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


def make_app(runtime: Runtime) -> web.Application:
    from notifier.web import alerts, api, console, desk, guard, line, openapi, subscribe

    app = web.Application(
        middlewares=[guard.security_headers, errors, guard.api_limits],
        client_max_size=runtime.settings.max_body_bytes,
    )
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    api.add_routes(app)
    alerts.add_routes(app)
    line.add_routes(app)
    subscribe.add_routes(app)
    console.add_routes(app)
    desk.add_routes(app)
    openapi.add_routes(app)
    return app
