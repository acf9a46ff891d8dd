"""Who may do what: the caller's token and role (401, 403, each refusal in the audit log),
the audit log's entry for an action, and the counter behind every rate limit."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from notifier.runtime import Runtime
from notifier.tokens import Token
from notifier.web.http import RUNTIME, ApiError, bearer


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
