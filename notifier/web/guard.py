"""What every response gets: security headers; and the API's rate limits (429)."""

from __future__ import annotations

import hashlib
import time

from aiohttp import web

from notifier.runtime import Runtime
from notifier.web.app import RUNTIME, ApiError, Handler

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
        if await over(runtime, f"api:ip:{client}", settings.api_rate_per_ip, 60):
            raise too_many("too many requests from this address")
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            token = hashlib.sha256(credential.strip().encode()).hexdigest()[:32]
            if await over(runtime, f"api:token:{token}", settings.api_rate_per_token, 60):
                raise too_many("too many requests with this token")
    return await handler(request)


def too_many(message: str, window: int = 60) -> ApiError:
    wait = window - int(time.time()) % window
    return ApiError(429, "too_many_requests", message, headers={"Retry-After": str(wait)})


async def over(runtime: Runtime, name: str, limit: int, window: int) -> bool:
    """Count one request in the current window; True once past ``limit``."""
    key = runtime.keys.rate_limit(f"{name}:{int(time.time() // window)}")
    async with runtime.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count, _ = await pipe.execute()
    return int(count) > limit
