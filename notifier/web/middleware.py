"""What wraps every request: security headers, errors as JSON in one shape (each request
counted and logged), and the API's rate limits (429)."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from redis.exceptions import RedisError

from notifier.logs import event
from notifier.tokens import digest
from notifier.web.guard import over
from notifier.web.http import RUNTIME, ApiError, Handler, Refused, bearer

log = logging.getLogger(__name__)
# scripts only from the service itself; inline styles for the pages' and mails' own styling
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # unsubscribe and confirmation links carry tokens
    "X-Content-Type-Options": "nosniff",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:  # redirects and the like: headers on them too
        e.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    if request.path.startswith("/console"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


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


@web.middleware
async def api_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Per client address and per token, a minute at a time, on /api/: 429 past either."""
    if request.path.startswith("/api/"):
        runtime = request.app[RUNTIME]
        settings = runtime.settings
        client = request.remote or "unknown"
        wait = await over(runtime, f"api:ip:{client}", settings.api_rate_per_ip, 60)
        if wait:
            raise too_many("too many requests from this address", wait)
        credential = bearer(request)
        if credential is not None:
            token = digest(credential)[:32]
            wait = await over(runtime, f"api:token:{token}", settings.api_rate_per_token, 60)
            if wait:
                raise too_many("too many requests with this token", wait)
    return await handler(request)


def too_many(message: str, wait: int) -> ApiError:
    return ApiError(429, "too_many_requests", message, headers={"Retry-After": str(wait)})
