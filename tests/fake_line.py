"""A fake LINE Messaging API that the real line-bot-sdk talks to over HTTP.

It speaks LINE's wire protocol as LINE documents it
(https://developers.line.biz/en/reference/messaging-api/): bearer-token auth, request
bodies checked against LINE's own OpenAPI document (tests/specs/line/) plus the limits
the schema does not carry, ``X-Line-Retry-Key`` idempotency with 409 and
``x-line-accepted-request-id``, ``x-line-request-id`` on every response, LINE's error
bodies, LINE's rate limits per endpoint (``LINE_LIMITS``: LINE's published table, held over
trailing windows, by default: a fake kinder than LINE would hide a service that sends too
fast), the monthly limit, and reply tokens that work once.

Faults queued with :meth:`FakeLine.fail` apply to the next multicast requests, one each,
in order. The long sleeps of the ``"timeout"`` and ``"hang"`` faults end as soon as
:meth:`FakeLine.stop` is called.

The handlers log nothing (the access log is off too): LINE user ids stay out of logs.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from tests.fake_server import FakeServer
from tests.line_spec import errors as spec_errors

__all__ = ["FAULT_SLEEP", "FakeLine", "json_size", "utf16_len"]

FAULT_SLEEP: Final = 30.0  # how long "timeout" and "hang" keep the client waiting
REPLY_TOKEN_TTL: Final = 60.0
RETRY_KEY_TTL: Final = 24 * 60 * 60.0

# LINE's "Rate limits" (Messaging API reference, per channel, as published in 2026-11):
# path → (requests, window in seconds). What the table leaves out is an "other endpoint".
LINE_LIMITS: Final = {
    "/v2/bot/message/multicast": (200, 1.0),
    "/v2/bot/message/push": (2_000, 1.0),
    "/v2/bot/message/reply": (2_000, 1.0),
    "/v2/bot/message/broadcast": (60, 3_600.0),
    "/v2/bot/message/narrowcast": (60, 3_600.0),
}
OTHER_LIMIT: Final = (2_000, 1.0)

MAX_RECIPIENTS: Final = 500
MAX_MESSAGES: Final = 5
TEXT_LIMIT: Final = 5000  # UTF-16 code units
ALT_TEXT_LIMIT: Final = 1500  # UTF-16 code units
FLEX_LIMITS: Final = {"bubble": 30_000, "carousel": 50_000}  # bytes of compact JSON
QUICK_REPLY_ITEMS: Final = 13
ACTION_LABEL_LIMIT: Final = 20
POSTBACK_DATA_LIMIT: Final = 300

AUTH_FAILED: Final = (
    "Authentication failed. Confirm that the access token in the authorization header is valid."
)
INTERNAL_ERROR: Final = "Internal server error"
TOO_MANY_REQUESTS: Final = "Too many requests"
MONTHLY_LIMIT: Final = "You have reached your monthly limit."
FORBIDDEN: Final = "Access to this API is not available for your account"
RETRY_KEY_INVALID: Final = "The value for the 'X-Line-Retry-Key' header is invalid"
RETRY_KEY_UNSUPPORTED: Final = "The 'X-Line-Retry-Key' header is not supported by this API"
RETRY_KEY_ACCEPTED: Final = "The retry key is already accepted"
INVALID_REPLY_TOKEN: Final = "Invalid reply token"
NOT_FOUND: Final = "Not found"
UNPARSABLE: Final = "The request body could not be parsed as JSON"

USER_ID: Final = re.compile(r"U[0-9a-f]{32}")
USER_IDS: Final = re.compile(r"(?:U[0-9a-f]{32}\n)*U[0-9a-f]{32}")  # joined by newlines
PUSH_TARGET: Final = re.compile(r"[UCR][0-9a-f]{32}")  # a user, group chat or multi-person chat
RETRY_KEY: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_REQUIRED: Final = re.compile(r"'(?P<name>[^']+)' is a required property")

SERVER_ERRORS: Final = frozenset({500, 502, 503, 504})
CLIENT_ERRORS: Final = frozenset({400, 401, 403, 429})
NAMED_FAULTS: Final = frozenset({"monthly", "timeout", "hang"})

Fault = int | str
Detail = dict[str, str]
REQUEST_ID: Final = web.RequestKey("request_id", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utf16_len(text: str) -> int:
    """Length as LINE counts it: UTF-16 code units (an astral character counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, the way LINE sizes a flex container."""
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(compact.encode("utf-8"))


def _error(
    status: int,
    message: str,
    details: list[Detail] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return web.json_response(body, status=status, headers=headers)


def _invalid(details: list[Detail]) -> web.Response:
    return _error(400, f"The request body has {len(details)} error(s)", details)


def _fault_response(fault: Fault) -> web.Response:
    if fault == "monthly":
        return _error(429, MONTHLY_LIMIT)
    if fault == 429:
        return _error(429, TOO_MANY_REQUESTS)
    if fault == 401:
        return _error(401, AUTH_FAILED)
    if fault == 403:
        return _error(403, FORBIDDEN)
    if fault == 400:
        return _invalid([{"message": "May not be empty", "property": "messages[0].text"}])
    assert isinstance(fault, int) and fault in SERVER_ERRORS, fault
    return _error(fault, INTERNAL_ERROR)


def _property(parts: list[str]) -> str:
    """``["messages", "0", "text"]`` as LINE names it: ``messages[0].text``."""
    named = ""
    for part in parts:
        if part.isdigit():
            named += f"[{part}]"
        else:
            named += f".{part}" if named else part
    return named


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _schema_details(body: Any, schema: str) -> list[Detail]:
    """LINE's OpenAPI document's complaints about ``body``, as LINE's error details.

    jsonschema quotes the offending value in its messages; LINE does not echo request
    values (user ids!) back, so the value is replaced by "The value".
    """
    details: list[Detail] = []
    for found in spec_errors(body, schema):
        path, _, message = found.partition(": ")
        parts = [] if path == "(root)" else path.split("/")
        value = _value_at(body, parts)
        if value is not _MISSING:
            message = message.replace(repr(value), "The value", 1)
        prop = _property(parts)
        required = _REQUIRED.fullmatch(message)
        if required:
            prop, message = _join(prop, required["name"]), "must be specified"
        detail = {"message": message, "property": prop} if prop else {"message": message}
        if detail not in details:  # a discriminated subtype is checked once per route to it
            details.append(detail)
    return details


_MISSING: Final = object()


def _shape_details(body: Any, multicast: bool) -> list[Detail]:
    """The shapes the limits below read, checked on every body the OpenAPI document is
    not (a benchmark samples that check): a missing or mistyped field is refused."""
    if not isinstance(body, dict):
        return [{"message": "The request body must be an object"}]
    details: list[Detail] = []

    def need(value: Any, kind: type, prop: str) -> bool:
        """Whether ``value`` is there and a ``kind``; if not, say so."""
        if value is _MISSING:
            details.append({"message": "must be specified", "property": prop})
            return False
        if not isinstance(value, kind):
            details.append({"message": "Invalid type", "property": prop})
            return False
        return True

    to = body.get("to", _MISSING)
    if multicast and need(to, list, "to") and not all(type(user) is str for user in to):
        details.append({"message": "Invalid user ID", "property": "to"})
    if not multicast:
        need(to, str, "to")
    if "notificationDisabled" in body:
        need(body["notificationDisabled"], bool, "notificationDisabled")
    if not need(body.get("messages", _MISSING), list, "messages"):
        return details
    for i, message in enumerate(body["messages"]):
        at = f"messages[{i}]"
        if not need(message, dict, at) or not need(
            message.get("type", _MISSING), str, f"{at}.type"
        ):
            return details
        kind = message["type"]
        if kind == "text":
            need(message.get("text", _MISSING), str, f"{at}.text")
        elif kind == "flex":
            need(message.get("altText", _MISSING), str, f"{at}.altText")
            contents = message.get("contents", _MISSING)
            if need(contents, dict, f"{at}.contents"):
                need(contents.get("type", _MISSING), str, f"{at}.contents.type")
        quick_reply = message.get("quickReply")
        if quick_reply is not None and need(quick_reply, dict, f"{at}.quickReply"):
            items = quick_reply.get("items", [])
            if need(items, list, f"{at}.quickReply.items"):
                for j, item in enumerate(items):
                    need(item, dict, f"{at}.quickReply.items[{j}]")
    return details


def _value_at(body: Any, parts: list[str]) -> Any:
    value = body
    for part in parts:
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _length(prop: str, low: int, high: int) -> Detail:
    return {"message": f"Length must be between {low} and {high}", "property": prop}


def _size(prop: str, low: int, high: int) -> Detail:
    return {"message": f"Size must be between {low} and {high}", "property": prop}


def _message_details(messages: list[dict[str, Any]]) -> list[Detail]:
    """LINE's limits on message objects that its OpenAPI document does not carry.

    Only called on bodies that passed the schema, so the shapes are known.
    """
    details: list[Detail] = []
    if not 1 <= len(messages) <= MAX_MESSAGES:
        details.append(_size("messages", 1, MAX_MESSAGES))
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        kind = message["type"]
        if kind == "text":
            text = message["text"]
            if not text:
                details.append({"message": "May not be empty", "property": f"{at}.text"})
            elif utf16_len(text) > TEXT_LIMIT:
                details.append(_length(f"{at}.text", 0, TEXT_LIMIT))
        elif kind == "flex":
            alt_text = message["altText"]
            if not 1 <= utf16_len(alt_text) <= ALT_TEXT_LIMIT:
                details.append(_length(f"{at}.altText", 1, ALT_TEXT_LIMIT))
            contents = message["contents"]
            limit = FLEX_LIMITS.get(contents["type"])
            if limit is not None and json_size(contents) > limit:
                too_big = f"Size must be {limit} bytes or less"
                details.append({"message": too_big, "property": f"{at}.contents"})
        quick_reply = message.get("quickReply")
        if quick_reply is not None:
            details.extend(_quick_reply_details(f"{at}.quickReply", quick_reply))
    return details


def _quick_reply_details(at: str, quick_reply: dict[str, Any]) -> list[Detail]:
    details: list[Detail] = []
    items = quick_reply.get("items", [])
    if not 1 <= len(items) <= QUICK_REPLY_ITEMS:
        details.append(_size(f"{at}.items", 1, QUICK_REPLY_ITEMS))
    for j, item in enumerate(items):
        action = item.get("action") or {}
        where = f"{at}.items[{j}].action"
        label = action.get("label")
        if isinstance(label, str) and not 1 <= len(label) <= ACTION_LABEL_LIMIT:
            details.append(_length(f"{where}.label", 1, ACTION_LABEL_LIMIT))
        data = action.get("data")
        if action.get("type") == "postback" and isinstance(data, str):
            if len(data) > POSTBACK_DATA_LIMIT:
                details.append(_length(f"{where}.data", 0, POSTBACK_DATA_LIMIT))
    return details


def _recipient_details(to: list[str]) -> list[Detail]:
    if 1 <= len(to) <= MAX_RECIPIENTS and all(type(user) is str for user in to):
        if USER_IDS.fullmatch("\n".join(to)) and len(set(to)) == len(to):
            return []  # the usual case, checked in one pass
    details: list[Detail] = []
    if not 1 <= len(to) <= MAX_RECIPIENTS:
        details.append(_size("to", 1, MAX_RECIPIENTS))
    seen: set[str] = set()
    for i, user in enumerate(to):
        if not USER_ID.fullmatch(user):
            details.append({"message": "Invalid user ID", "property": f"to[{i}]"})
        elif user in seen:
            details.append({"message": "Duplicate user ID", "property": f"to[{i}]"})
        seen.add(user)
    return details


def _sent_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    sent = []
    for message in messages:
        entry = {"id": str(secrets.randbelow(9 * 10**17) + 10**17)}
        if message.get("type") in {"text", "textV2", "sticker", "image", "video"}:
            entry["quoteToken"] = secrets.token_urlsafe(96)
        sent.append(entry)
    return sent


class FakeLine(FakeServer):
    """A LINE Messaging API on 127.0.0.1 (random port), recording what it delivered.

    ``delivered``: LINE user id -> every message object it received (multicast and push).
    ``multicasts`` / ``pushes``: each accepted request, ``{"request_id", "retry_key",
    "to", "messages", "at"}`` (``at`` is ``time.monotonic()`` when LINE accepted it).
    ``replies``: each accepted reply, ``{"reply_token", "messages", "request_id"}``.
    ``responses``: ``(path, status)`` of every response, in order.
    ``monthly_limit``: while True, every multicast and push gets LINE's monthly-limit 429
    (replies are free on LINE and stay open).
    ``limits``: each endpoint's (requests, seconds), LINE's table by default; a request
    that would make more than that many in the trailing window gets 429 "Too many
    requests" and is counted in ``refused`` (path → count). ``rate`` sets the multicast
    limit alone, in requests a second.
    ``response_delay``: seconds every accepted multicast or push waits before answering.
    """

    def __init__(
        self,
        token: str = "test-channel-token",
        rate: float | None = None,
        response_delay: float = 0.0,
        schema_sample: int = 1,
        limits: dict[str, tuple[int, float]] | None = None,
    ) -> None:
        """``schema_sample``: check every request's body against LINE's OpenAPI document
        (1, for tests), or only every n-th one (for benchmarks, where the check would cost
        more than the service under test); LINE's limits are checked on every request."""
        super().__init__()
        self.token = token
        self.schema_sample = max(1, schema_sample)
        self._checked = 0
        self.limits = dict(LINE_LIMITS if limits is None else limits)
        if rate is not None:
            self.limits["/v2/bot/message/multicast"] = (max(1, int(rate)), 1.0)
        self.refused: Counter[str] = Counter()
        self._admitted: dict[str, deque[float]] = {}  # path → when each request came
        self.response_delay = response_delay
        self.monthly_limit = False
        self._delivered: dict[str, list[dict[str, Any]]] = {}
        self._unindexed: list[tuple[list[str], list[dict[str, Any]]]] = []
        self.multicasts: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.responses: list[tuple[str, int]] = []
        self._faults: deque[Fault] = deque()
        self._retry_keys: dict[str, tuple[str, float]] = {}  # key -> (request id, accepted at)
        self._reply_tokens: dict[str, float] = {}  # unused token -> issued at

    # -- lifecycle ---------------------------------------------------------------------

    def _middlewares(self) -> list[Any]:
        return [self._envelope]

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/bot/message/multicast", self._on_multicast)
        app.router.add_post("/v2/bot/message/push", self._on_push)
        app.router.add_post("/v2/bot/message/reply", self._on_reply)
        app.router.add_route("*", "/{tail:.*}", self._on_unknown)
        spec_errors({}, "MulticastRequest")  # load LINE's document now, not in the first request

    # -- test controls -----------------------------------------------------------------

    def fail(self, *faults: Fault) -> None:
        """Queue faults, one per coming multicast request, in order.

        500/502/503/504, 429, 400, 401, 403: that status, nothing accepted.
        ``"monthly"``: 429 "You have reached your monthly limit.", nothing accepted.
        ``"timeout"``: handle the request as usual (accept and deliver it), then keep the
        answer back for 30 s, so the client times out though LINE got it.
        ``"hang"``: keep the client waiting 30 s, accept nothing, then answer 500.
        """
        for fault in faults:
            named = isinstance(fault, str) and fault in NAMED_FAULTS
            status = type(fault) is int and fault in SERVER_ERRORS | CLIENT_ERRORS
            if not (named or status):
                raise ValueError(f"unknown fault {fault!r}")
        self._faults.extend(faults)

    def issue_reply_token(self) -> str:
        """A reply token the fake will accept once, within 60 s."""
        token = secrets.token_hex(16)
        self._reply_tokens[token] = time.monotonic()
        return token

    @property
    def delivered(self) -> dict[str, list[dict[str, Any]]]:
        """LINE user id -> every message object it received (multicast and push), in order.

        Indexed when read: 500 dictionary updates a multicast would cost the fake more
        than the rest of the request (a benchmark reads it never)."""
        for recipients, messages in self._unindexed:
            for user in recipients:
                self._delivered.setdefault(user, []).extend(messages)
        self._unindexed.clear()
        return self._delivered

    def messages_for(self, user_id: str) -> list[dict[str, Any]]:
        """Every message object ``user_id`` received (multicast and push), in order."""
        return list(self.delivered.get(user_id, []))

    # -- plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _envelope(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        request[REQUEST_ID] = request_id
        if self._within_limit(request.path):
            response = await handler(request)
        else:
            self.refused[request.path] += 1
            response = _error(429, TOO_MANY_REQUESTS)
        response.headers["x-line-request-id"] = request_id
        self.responses.append((request.path, response.status))
        return response

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _within_limit(self, path: str) -> bool:
        """Whether a request to ``path`` now keeps its endpoint within LINE's limit over
        the trailing window; if so it counts towards it."""
        count, window = self.limits.get(path, OTHER_LIMIT)
        now = time.monotonic()
        admitted = self._admitted.setdefault(path, deque())
        while admitted and admitted[0] <= now - window:
            admitted.popleft()
        if len(admitted) >= count:
            return False
        admitted.append(now)
        return True

    def _accepted_request(self, key: str) -> str | None:
        accepted = self._retry_keys.get(key)
        if accepted is None:
            return None
        request_id, at = accepted
        if time.monotonic() - at >= RETRY_KEY_TTL:
            del self._retry_keys[key]
            return None
        return request_id

    @staticmethod
    async def _json_body(request: web.Request) -> tuple[Any, web.Response | None]:
        ctype = request.content_type
        if ctype != "application/json":
            return None, _error(415, f"The content type, {ctype}, is not supported")
        raw = await request.read()
        try:
            return json.loads(raw.decode("utf-8")), None
        except UnicodeDecodeError:
            return None, _error(400, UNPARSABLE)
        except json.JSONDecodeError as e:
            return None, _error(400, f"{UNPARSABLE} (line: {e.lineno}, column: {e.colno})")

    # -- endpoints ---------------------------------------------------------------------

    async def _on_multicast(self, request: web.Request) -> web.Response:
        fault = self._faults.popleft() if self._faults else None
        if fault == "hang":
            await self._pause(FAULT_SLEEP)
            return _error(500, INTERNAL_ERROR)
        if fault is not None and fault != "timeout":
            return _fault_response(fault)
        response, accepted = await self._send(request, multicast=True)
        if fault == "timeout":
            await self._pause(FAULT_SLEEP)  # LINE got it; the answer is lost on the way back
        elif accepted:
            await self._pause(self.response_delay)
        return response

    async def _on_push(self, request: web.Request) -> web.Response:
        response, accepted = await self._send(request, multicast=False)
        if accepted:
            await self._pause(self.response_delay)
        return response

    async def _send(self, request: web.Request, multicast: bool) -> tuple[web.Response, bool]:
        """Multicast or push: the response, and whether the request was accepted."""
        if not self._authorized(request):
            return _error(401, AUTH_FAILED), False
        if self.monthly_limit:
            return _error(429, MONTHLY_LIMIT), False
        body, failed = await self._json_body(request)
        if failed is not None:
            return failed, False
        key = request.headers.get("X-Line-Retry-Key")
        if key is not None:
            if not RETRY_KEY.fullmatch(key):
                return _error(400, RETRY_KEY_INVALID), False
            key = key.lower()
            first = self._accepted_request(key)
            if first is not None:
                headers = {"x-line-accepted-request-id": first}
                return _error(409, RETRY_KEY_ACCEPTED, headers=headers), False
        schema = "MulticastRequest" if multicast else "PushMessageRequest"
        self._checked += 1
        sampled = (self._checked - 1) % self.schema_sample == 0
        details = _schema_details(body, schema) if sampled else _shape_details(body, multicast)
        if details:  # the limits below can trust the shapes checked
            return _invalid(details), False
        to: Any = body["to"]
        messages: list[dict[str, Any]] = body["messages"]
        if multicast:
            details = _recipient_details(to)
        elif not PUSH_TARGET.fullmatch(to):
            details = [{"message": "Invalid user ID", "property": "to"}]
        details += _message_details(messages)
        if details:
            return _invalid(details), False

        # accepted: nothing from here on awaits, so a retry key is taken exactly once
        request_id = request[REQUEST_ID]
        recipients: list[str] = list(to) if multicast else [to]
        if key is not None:
            self._retry_keys[key] = (request_id, time.monotonic())
        record = {
            "request_id": request_id,
            "retry_key": key,
            "to": recipients if multicast else to,
            "messages": messages,
            "at": time.monotonic(),
            "wall": time.time(),
        }
        (self.multicasts if multicast else self.pushes).append(record)
        self._unindexed.append((recipients, messages))
        if multicast:
            return web.json_response({}), True
        return web.json_response({"sentMessages": _sent_messages(messages)}), True

    async def _on_reply(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, AUTH_FAILED)
        if "X-Line-Retry-Key" in request.headers:
            return _error(400, RETRY_KEY_UNSUPPORTED)
        body, failed = await self._json_body(request)
        if failed is not None:
            return failed
        details = _schema_details(body, "ReplyMessageRequest")
        if details:
            return _invalid(details)
        messages: list[dict[str, Any]] = body["messages"]
        details = _message_details(messages)
        if details:
            return _invalid(details)
        token: str = body["replyToken"]
        issued = self._reply_tokens.pop(token, None)
        if issued is None or time.monotonic() - issued >= REPLY_TOKEN_TTL:
            return _error(400, INVALID_REPLY_TOKEN)
        request_id = request[REQUEST_ID]
        self.replies.append({"reply_token": token, "messages": messages, "request_id": request_id})
        return web.json_response({"sentMessages": _sent_messages(messages)})

    async def _on_unknown(self, request: web.Request) -> web.Response:
        return _error(404, NOT_FOUND)
