"""What every route shares: the runtime's key, JSON answers and errors, reading a body,
the bearer token and the Idempotency-Key of a request."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from notifier import json_input
from notifier.config import Settings
from notifier.logs import event
from notifier.runtime import Runtime
from notifier.tokens import Token

log = logging.getLogger(__name__)
RUNTIME = web.AppKey("runtime", Runtime)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_IDEMPOTENCY_KEY = 255


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


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The body as a form (read once; aiohttp keeps it); 400 if it is not one."""
    try:
        return await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # no boundary, bad parts or charset
        raise ApiError(400, "bad_form", "the body is not a form this page sends") from None


async def read_json(request: web.Request) -> Any:
    """The body as JSON (read only after the caller's token was checked); 400 if it is not
    JSON, or nests deeper than any notice does."""
    try:
        return json_input.loads(await request.read())
    except json_input.JsonError as e:
        raise ApiError(400, "bad_json", f"the body {e}") from None


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


def idempotency_key(request: web.Request, token: Token) -> str | None:
    """The digest of the request's ``Idempotency-Key``, scoped to the token's account, or
    None without one; 400 for a key that is not 1–255 printable ASCII. Pair it with the
    body's digest once the body is valid (``intake.body_digest``)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and visible_ascii(key)):
        raise ApiError(
            400, "bad_idempotency_key", "Idempotency-Key must be 1–255 printable ASCII characters"
        )
    return hashlib.sha256(f"{token.name}\0{key}".encode()).hexdigest()


def idempotency_conflict() -> ApiError:
    return ApiError(
        422, "idempotency_conflict", "this Idempotency-Key was used with a different body"
    )


def not_replicated(what: str, notice_id: str) -> ApiError:
    """Stored, but a failover now could lose it: the caller is told to send it again."""
    event(log, "notice.not_replicated", logging.WARNING, notice=notice_id)
    return ApiError(
        503,
        "not_replicated",
        f"no replica confirmed the {what} in time; send it again with the same"
        " Idempotency-Key (it will not be sent twice)",
        headers={"Retry-After": "1"},
    )


def mark_held(view: dict[str, Any], settings: Settings, now: datetime) -> None:
    """Routine pushes wait out the night: say until when, on each channel that holds them
    (in the API's view of a notice and on the console's list)."""
    for channel, progress in view["progress"].items():
        until = settings.quiet_until(channel, now)
        if until is not None and progress["pending"] and view["kind"] == "announcement":
            progress["held_until"] = until.isoformat()
