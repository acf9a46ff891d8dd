"""What every response gets: security headers; and the API's rate limits (429)."""

from __future__ import annotations

from aiohttp import web

from notifier.runtime import Runtime
from notifier.tokens import digest
from notifier.web.app import RUNTIME, ApiError, Handler, bearer

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


async def over(runtime: Runtime, name: str, limit: int, window: int) -> int:
    """Count one request against ``name``'s window, which opens with its first request and
    lasts ``window`` seconds: 0 while within ``limit``, else the seconds the window has
    left (for Retry-After)."""
    key = runtime.keys.rate_limit(name)
    async with runtime.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    return max(int(ttl), 1) if int(count) > limit else 0
