"""POST /line/webhook: LINE's signed events drive the subscription conversation."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from linebot.v3.messaging import (
    ApiException,
    ReplyMessageRequest,
)
from linebot.v3.webhook import SignatureValidator
from linebot.v3.webhooks import (
    Event,
    FollowEvent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
)

from channels.line import answered, limiter, messaging_api, refusal
from notifier import json_input, line_chat
from notifier.line_chat import Choices
from notifier.logs import event as log_event
from notifier.models import LINE_USER_ID
from notifier.runtime import Runtime
from notifier.web.http import RUNTIME, ApiError, json_response

log = logging.getLogger(__name__)
REPLY_WINDOW_MS = 60_000  # a reply token is good for about a minute
EVENT_MEMORY = 24 * 3600  # seconds a webhookEventId is remembered (LINE redelivers within it)
EVENT_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")  # LINE's are 26-character ULIDs


class LineWebhook:
    """The signature check and the reply client, made once per application."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        secret = settings.line_channel_secret
        assert secret is not None
        self.runtime = runtime
        self.validator = SignatureValidator(secret.get_secret_value())
        self.client, self.api = messaging_api(settings)
        self.timeout = aiohttp.ClientTimeout(total=settings.line_timeout)
        self.limiter = limiter(runtime.redis, runtime.keys, settings, "reply")
        runtime.metrics.line_rate_limit.labels("reply").set(settings.line_reply_rate_limit)

    async def handle(self, event: Any) -> None:
        rt = self.runtime
        user_id = getattr(event.source, "user_id", None)
        if not user_id:
            return  # groups and rooms are not residents
        store, ward = rt.subscribers, rt.settings.ward
        subscriber_id = await store.find("line", user_id)
        replies: list[dict[str, Any]] = []
        if isinstance(event, UnfollowEvent):
            if subscriber_id is not None:
                await store.delete(subscriber_id)  # the resident's data goes with them
                await rt.audit.resident("line.unfollow", subscriber_id, "line")
            log_event(log, "line.unfollow", subscriber=subscriber_id)
            return
        choices = await self._choices(subscriber_id)
        if isinstance(event, FollowEvent):
            subscriber_id = await self._save(user_id, Choices())
            replies = line_chat.welcome(ward)
        elif isinstance(event, PostbackEvent):
            new, replies = line_chat.on_postback(ward, choices, event.postback.data)
            if new != choices or subscriber_id is None:
                subscriber_id = await self._save(user_id, new)
        elif isinstance(event, MessageEvent):  # text, a sticker, a photo…: each is answered
            if subscriber_id is None:
                subscriber_id = await self._save(user_id, choices)
            if isinstance(event.message, TextMessageContent):
                replies = line_chat.on_text(ward, choices, event.message.text)
            else:
                replies = line_chat.on_other(ward, choices)
        log_event(log, "line.event", type=event.type, subscriber=subscriber_id)
        await self._reply(event, replies)

    async def _choices(self, subscriber_id: str | None) -> Choices:
        sub = await self.runtime.subscribers.get(subscriber_id) if subscriber_id else None
        if sub is None:
            return Choices()
        return Choices(tuple(sub.areas), tuple(sub.topics), sub.language)

    async def _save(self, user_id: str, choices: Choices) -> str:
        store = self.runtime.subscribers
        sub = store.validate(
            {
                "channel": "line",
                "address": user_id,
                "areas": list(choices.areas),
                "topics": list(choices.topics),
                "language": choices.language,
            }
        )
        ((subscriber_id, created),) = await store.save([sub])
        action = "line.follow" if created else "line.choices"
        await self.runtime.audit.resident(action, subscriber_id, "line")
        return subscriber_id

    async def _reply(self, event: Any, messages: list[dict[str, Any]]) -> None:
        """Reply once, only in active mode, only while the token is fresh."""
        token = getattr(event, "reply_token", None)
        mode = getattr(event.mode, "value", event.mode)  # an enum of str in the SDK
        if not messages or not token or mode != "active":
            return
        if time.time() * 1000 - event.timestamp > REPLY_WINDOW_MS:
            return
        request = ReplyMessageRequest.from_dict({"replyToken": token, "messages": messages[:5]})
        metrics = self.runtime.metrics
        await self.limiter.acquire()
        try:
            response = await self.api.reply_message_with_http_info(
                request, _request_timeout=self.timeout
            )
            answered(metrics, "reply", response.status_code, dict(response.headers or {}))
        except ApiException as e:
            answered(metrics, "reply", *refusal(e))
            log_event(
                log, "line.reply_failed", logging.WARNING, error="ApiException", status=e.status
            )
        except (TimeoutError, aiohttp.ClientError) as e:
            metrics.line_requests.labels("reply", "0").inc()
            log_event(log, "line.reply_failed", logging.WARNING, error=type(e).__name__)

    async def close(self) -> None:
        await self.client.close()


LINE = web.AppKey("line", LineWebhook)


async def webhook(request: web.Request) -> web.Response:
    line: LineWebhook | None = request.app.get(LINE)
    if line is None:
        raise ApiError(503, "line_not_configured", "LINE credentials are not configured")
    signature = request.headers.get("X-Line-Signature", "")
    if not signature:
        raise ApiError(400, "missing_signature", "the X-Line-Signature header is missing")
    raw = await request.read()
    if not signature.isascii() or not line.validator.validate(
        raw.decode(errors="replace"), signature
    ):
        raise ApiError(401, "bad_signature", "the signature does not match the body")
    try:
        payload = json_input.loads(raw)
    except json_input.JsonError as e:
        raise ApiError(400, "bad_payload", f"the body {e}") from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise ApiError(400, "bad_payload", "not a LINE webhook payload (no events list)")
    redis, keys = line.runtime.redis, line.runtime.keys
    fault: Exception | None = None
    for position, data in enumerate(events):  # each event on its own
        item = read_event(data)
        if item is None:
            log_event(log, "line.event_skipped", logging.WARNING, position=position)
            continue
        seen = keys.line_event(item.webhook_event_id)
        if not await redis.set(seen, "1", nx=True, ex=EVENT_MEMORY):
            continue  # a redelivery of an event already handled
        try:
            await line.handle(item)
        except Exception as e:  # the others still go; LINE's redelivery tries this one again
            await redis.delete(seen)
            log_event(log, "line.event_fault", logging.ERROR, position=position, error=repr(e))
            fault = e
    if fault is not None:
        raise fault
    return json_response({})


def read_event(data: Any) -> Any:
    """The SDK's event for one item of a delivery, or None if it is not one we can take: not
    an event LINE documents, or a user id that is not LINE's (``U`` and 32 hex digits)."""
    if not isinstance(data, dict):
        return None
    try:
        item = Event.from_dict(data)
    except Exception:  # the SDK's generated models raise KeyError, ValueError, ValidationError …
        return None
    user_id = getattr(getattr(item, "source", None), "user_id", None)
    if user_id is not None and not LINE_USER_ID.match(user_id):
        return None
    event_id = getattr(item, "webhook_event_id", None)
    return item if isinstance(event_id, str) and EVENT_ID.match(event_id) else None


async def line_context(app: web.Application) -> AsyncIterator[None]:
    """The reply client lives as long as the application, when LINE is configured."""
    runtime = app[RUNTIME]
    if runtime.settings.live("line"):
        app[LINE] = LineWebhook(runtime)
    yield
    if LINE in app:
        await app[LINE].close()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/line/webhook", webhook)
    app.cleanup_ctx.append(line_context)
