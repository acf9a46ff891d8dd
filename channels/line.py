"""LINE: Flex Message multicasts to subscribers' user ids, through line-bot-sdk's async client.

Each batch carries a retry key derived from (notice, channel, batch number), so however
often a batch is retried — after a timeout, a 5xx or a worker's death — LINE delivers
it once (a 409 with ``x-line-accepted-request-id`` means it already did).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from typing import TYPE_CHECKING, Any, TypedDict

import aiohttp
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    Message,
    MulticastRequest,
)

from channels.base import (
    BaseChannel,
    Batch,
    Context,
    Outcome,
    Paused,
    PermanentError,
    RetryableError,
)
from channels.outbox import write_json
from notifier.channel_registry import REGISTRY
from notifier.config import Settings
from notifier.i18n import speaker
from notifier.logs import event
from notifier.models import AnyNotice
from notifier.ratelimit import RateLimiter
from notifier.render import Templates, prefix

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from notifier.keys import Keys
    from notifier.metrics import Metrics

log = logging.getLogger(__name__)

ALT_TEXT_LIMIT = 1500  # LINE counts UTF-16 code units
BUBBLE_LIMIT = 30_000  # bytes of the bubble's JSON
MONTHLY_LIMIT = "You have reached your monthly limit."
RETRY_KEY_NAMESPACE = uuid.UUID("0c5e8f7a-2b7d-4a8e-9d61-3f0f4b1e9a27")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_text(text: str, limit: int, tail: str) -> str:
    """Cut ``text`` so that it and ``tail`` fit in ``limit`` UTF-16 units."""
    if utf16_len(text) <= limit:
        return text
    room = limit - utf16_len(tail) - 1
    cut = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", errors="ignore")
    return cut.rstrip() + "…" + tail


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def retry_key(notice_id: str, channel: str, number: int) -> str:
    """The same for every try of one batch, different for every batch."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{notice_id}:{channel}:{number}"))


def flex_message(templates: Templates, notice: AnyNotice, lang: str) -> dict[str, Any]:
    """The Flex bubble within LINE's limits: a body too long is cut, the link kept."""
    title, body = notice.title_in(lang), notice.body_in(lang)
    marks = prefix(notice, lang)  # the phone's notification shows it
    alt_text = fit_text(f"{marks}{title}\n{body}", ALT_TEXT_LIMIT, "")
    say = speaker(lang)
    more = "\n" + say("（続きはリンク先へ）") if notice.url else ""

    def render(body_text: str) -> dict[str, Any]:
        text = templates.render(
            "line/announcement.json", notice, lang, alt_text=alt_text, body_text=body_text
        )
        message: dict[str, Any] = json.loads(text)
        return message

    message = render(body)
    if json_size(message["contents"]) <= BUBBLE_LIMIT:
        return message
    low, high = 0, len(body)  # the longest cut that fits
    while low < high:
        middle = (low + high + 1) // 2
        if json_size(render(body[:middle].rstrip() + "…" + more)["contents"]) <= BUBBLE_LIMIT:
            low = middle
        else:
            high = middle - 1
    return render(body[:low].rstrip() + "…" + more)


# the LINE endpoints the service calls, each with the setting of its rate (requests a
# second, shared by every process through one limiter in Redis)
ENDPOINTS = {"multicast": "line_rate_limit", "reply": "line_reply_rate_limit"}


# a request that would leave later than this after its slot takes another: at 190/s, no
# second then holds more than 190 × 1.04 + 1 = 198.6 (LINE's limit: 200)
LATE = 0.04


def limiter(redis: Redis, keys: Keys, settings: Settings, endpoint: str) -> RateLimiter:
    """The limiter of one LINE endpoint. It spaces requests evenly (no burst): LINE counts
    its limit over any second, and a bucket that let a second's worth out at once would
    put more than the limit into one; nor may requests held up together (a busy event
    loop, a process not scheduled) go out together."""
    rate = getattr(settings, ENDPOINTS[endpoint])
    return RateLimiter(redis, keys.rate_limit(f"line:{endpoint}"), rate, late=LATE)


def answered(
    metrics: Metrics, endpoint: str, status: int, headers: dict[str, str], body: str = ""
) -> None:
    """Count LINE's answer; a 429 for going too fast is logged with LINE's request id (as
    LINE asks, to look it up with them)."""
    metrics.line_requests.labels(endpoint, str(status)).inc()
    if status != 429:
        return
    monthly = _message(body) == MONTHLY_LIMIT
    metrics.line_refused.labels(endpoint, "monthly" if monthly else "rate").inc()
    if not monthly:
        request_id = headers.get("x-line-request-id", "")
        event(log, "line.rate_limited", logging.WARNING, endpoint=endpoint, request_id=request_id)


def _message(body: str) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return ""


def classify(status: int, headers: dict[str, str], body: str) -> Outcome | Exception:
    """What a LINE answer means for the batch: delivered, or an error with retry semantics."""
    request_id = headers.get("x-line-request-id", "")
    meta = {"status": status, "request_id": request_id}
    if 200 <= status < 300:
        return Outcome(meta=meta)
    if status == 409 and headers.get("x-line-accepted-request-id"):
        return Outcome(meta={**meta, "request_id": headers["x-line-accepted-request-id"]})
    message = _message(body) or f"HTTP {status}"
    if status == 429 and message == MONTHLY_LIMIT:
        return Paused(f"LINE: {message}", defer=0.0)  # the channel decides for how long
    if status == 429:
        wait = 1.0 + random.random()  # noqa: S311 - LINE sends no Retry-After
        return RetryableError(f"LINE 429: {message}", defer=wait, meta=meta, spend=False)
    if status >= 500:
        return RetryableError(f"LINE {status}: {message}", meta=meta)
    return PermanentError(f"LINE {status}: {message}", meta=meta)


def messaging_api(
    settings: Settings, pool: int | None = None
) -> tuple[AsyncApiClient, AsyncMessagingApi]:
    """line-bot-sdk's async client for NOTIFIER_LINE_API_URL, with up to ``pool``
    connections (the SDK's default without); close the first when done."""
    token = settings.line_channel_access_token
    assert token is not None
    config = Configuration(host=settings.line_api_url, access_token=token.get_secret_value())
    if pool is not None:
        config.connection_pool_maxsize = pool
    client = _ApiClient(config)
    rest = client.rest_client
    sdk_session = rest.pool_manager  # made with trust_env=True: it would read the proxy
    # variables and ~/.netrc (in a thread) on every request
    rest.pool_manager = aiohttp.ClientSession(connector=sdk_session.connector, trust_env=False)
    sdk_session.detach()
    api = AsyncMessagingApi(client)
    api.line_base_path = settings.line_api_url  # the SDK fixes it to api.line.me otherwise
    return client, api


class _ApiClient(AsyncApiClient):  # type: ignore[misc]  # the SDK is untyped
    """line-bot-sdk's async client, taking a ``Multicast`` body as the JSON it already is:
    the SDK's own walk of it visits every user id and every node of the Flex tree."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        if isinstance(obj, Multicast):
            return obj.to_dict()
        return super().sanitize_for_serialization(obj)


class Multicast(MulticastRequest):  # type: ignore[misc]  # the SDK is untyped
    """line-bot-sdk's multicast request, whose ``to_dict`` (what the SDK serialises)
    reuses each message's JSON, made once, where the SDK's own would walk the Flex tree
    and every user id through pydantic on each request."""

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"to": list(self.to), "messages": [_json(m) for m in self.messages]}
        if self.notification_disabled is not None:
            body["notificationDisabled"] = self.notification_disabled
        return body


_MESSAGE_JSON: dict[int, tuple[Message, dict[str, Any]]] = {}


def _json(message: Message) -> dict[str, Any]:
    """``message.to_dict()``, computed once for each message model in use."""
    cached = _MESSAGE_JSON.get(id(message))
    if cached is None or cached[0] is not message:  # an id can be reused once freed
        if len(_MESSAGE_JSON) >= 256:
            _MESSAGE_JSON.clear()
        cached = _MESSAGE_JSON[id(message)] = (message, message.to_dict())
    return cached[1]


class LineContent(TypedDict):
    messages: list[dict[str, Any]]  # LINE's message objects, as the multicast takes them


class LineChannel(BaseChannel[LineContent]):
    spec = REGISTRY["line"]

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        settings = context.settings
        self.live = settings.live(self.name)
        self._client: AsyncApiClient | None = None
        self._models: dict[str, list[Message]] = {}
        self._api: AsyncMessagingApi | None = None
        self._timeout = aiohttp.ClientTimeout(total=settings.line_timeout)
        self._limiter = limiter(context.redis, context.keys, settings, "multicast")
        context.metrics.line_rate_limit.labels("multicast").set(settings.line_rate_limit)
        if self.live:
            pool = max(16, settings.worker_concurrency * 2)
            self._client, self._api = messaging_api(settings, pool)

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> LineContent:
        return {"messages": [flex_message(templates, notice, lang)]}

    def request_body(self, batch: Batch) -> dict[str, Any]:
        """The multicast request, exactly as LINE's API takes it."""
        return {"to": batch.recipients.addresses, "messages": self.content_of(batch)["messages"]}

    async def _send(self, batch: Batch) -> Outcome:
        if not batch.recipients:
            raise PermanentError("a multicast needs at least one user id")
        if self._api is None:
            return await self._to_outbox(batch)
        request = Multicast.construct(
            to=batch.recipients.addresses,
            messages=self._messages(batch),
            notification_disabled=False,
        )
        key = retry_key(batch.notice_id, self.name, batch.number)
        await self._limiter.acquire()
        metrics = self.context.metrics
        try:
            response = await self._api.multicast_with_http_info(
                request, x_line_retry_key=key, _request_timeout=self._timeout
            )
            status, headers, body = response.status_code, dict(response.headers or {}), ""
        except ApiException as e:
            status, headers, body = refusal(e)
        except (TimeoutError, aiohttp.ClientError) as e:
            metrics.line_requests.labels("multicast", "0").inc()
            raise RetryableError(f"LINE unreachable: {type(e).__name__}") from e
        answered(metrics, "multicast", status, headers, body)
        result = classify(status, headers, body)
        if isinstance(result, Paused):
            raise Paused(result.message, defer=self.context.settings.line_pause_seconds)
        if isinstance(result, Exception):
            raise result
        result.sent = len(batch.recipients)
        return result

    def _messages(self, batch: Batch) -> list[Message]:
        """The SDK's message models, built once per (notice, language): building them
        for every batch of 500 would cost more than sending it."""
        key = f"{batch.notice_id}:{batch.lang}"
        if key not in self._models:
            if len(self._models) >= 64:
                self._models.clear()
            self._models[key] = [Message.from_dict(m) for m in self.content_of(batch)["messages"]]
        return self._models[key]

    async def _to_outbox(self, batch: Batch) -> Outcome:
        path = self.context.outbox(self.name) / (
            f"{batch.notice_id}-{batch.lang}-{batch.number:04d}.json"
        )
        await asyncio.to_thread(write_json, path, self.request_body(batch))
        return Outcome(sent=len(batch.recipients))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def refusal(error: ApiException) -> tuple[int, dict[str, str], str]:
    """What LINE answered, as the SDK raised it: status, headers (lower-case names), body."""
    headers = {k.lower(): v for k, v in (error.headers or {}).items()}
    return int(error.status or 0), headers, _text(error.body)


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode(errors="replace")
    return "" if body is None else str(body)
