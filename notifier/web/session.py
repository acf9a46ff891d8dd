"""Console sessions: a random id kept in Redis, sent as a signed, HttpOnly, SameSite cookie.

A session records who signed in (a staff account or an API token, by name and the token's
hash, never the token) and a CSRF token that every form of the console carries back. It
ends when idle (NOTIFIER_SESSION_IDLE_MINUTES), after NOTIFIER_SESSION_HOURS in any case,
at sign-out, and as soon as its account is removed or its token revoked.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, Signer

from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.tokens import Token

COOKIE = "notifier_session"
PRE_COOKIE = "notifier_signin"  # the sign-in form's CSRF token, before there is a session
PATH = "/console"


@dataclass(frozen=True)
class Session:
    id: str
    who: Token
    csrf: str


async def signer(runtime: Runtime) -> Signer:
    secret = runtime.settings.secret_key
    if secret is not None:
        key = secret.get_secret_value()
    else:  # a trial without NOTIFIER_SECRET_KEY: a random key, shared by the processes
        await runtime.redis.set(runtime.keys.session_key, secrets.token_urlsafe(32), nx=True)
        key = as_text(await runtime.redis.get(runtime.keys.session_key) or b"")
    return Signer(key, salt="notifier.console.session")


def set_cookie(runtime: Runtime, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=runtime.settings.public_url.startswith("https://"),
        max_age=runtime.settings.session_hours * 3600,
    )


async def start(runtime: Runtime, response: web.StreamResponse, who: Token, proof: str) -> None:
    """Open a session for ``who``; ``proof`` is the token's hash, or '' for an account."""
    session_id = secrets.token_urlsafe(32)
    record = {
        "name": who.name,
        "role": who.role,
        "proof": proof,
        "csrf": secrets.token_urlsafe(32),
        "started": time.time(),
    }
    idle = runtime.settings.session_idle_minutes * 60
    await runtime.redis.set(runtime.keys.session(session_id), json.dumps(record), ex=idle)
    set_cookie(runtime, response, COOKIE, (await signer(runtime)).sign(session_id).decode())
    response.del_cookie(PRE_COOKIE, path=PATH)


async def current(request: web.Request, runtime: Runtime) -> Session | None:
    """The request's live session, its idle time reset; None if there is none."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        session_id = (await signer(runtime)).unsign(cookie).decode()
    except BadSignature:
        return None
    key = runtime.keys.session(session_id)
    raw = await runtime.redis.get(key)
    if raw is None:
        return None
    record = json.loads(raw)
    settings = runtime.settings
    if time.time() - record["started"] > settings.session_hours * 3600:
        await runtime.redis.delete(key)
        return None
    who = await _still_valid(runtime, record)
    if who is None:  # the account was removed or the token revoked: the session ends now
        await runtime.redis.delete(key)
        return None
    await runtime.redis.expire(key, settings.session_idle_minutes * 60)
    return Session(session_id, who, record["csrf"])


async def _still_valid(runtime: Runtime, record: dict[str, str]) -> Token | None:
    name = record["name"]
    if name.startswith("account:"):
        return await runtime.accounts.get(name.removeprefix("account:"))
    return await runtime.tokens.check_digest(record["proof"])


async def end(runtime: Runtime, session: Session, response: web.StreamResponse) -> None:
    await runtime.redis.delete(runtime.keys.session(session.id))
    response.del_cookie(COOKIE, path=PATH)


def csrf_ok(expected: str, given: object) -> bool:
    """Whether a form carried back ``expected``, compared in constant time as bytes: any
    other value (none, a file, non-ASCII text) is a refusal, never a fault."""
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


async def signin_csrf(request: web.Request, runtime: Runtime) -> str:
    """The sign-in form's CSRF token: the one in its signed cookie, or a new one."""
    cookie = request.cookies.get(PRE_COOKIE, "")
    try:
        return (await signer(runtime)).unsign(cookie).decode()
    except BadSignature:
        return secrets.token_urlsafe(32)


async def keep_signin_csrf(runtime: Runtime, response: web.StreamResponse, value: str) -> None:
    set_cookie(runtime, response, PRE_COOKIE, (await signer(runtime)).sign(value).decode())
