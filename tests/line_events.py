"""Webhook payloads as LINE sends them (tests/specs/line/webhook.yml), signed as LINE signs them.

    token = fake.issue_reply_token()
    body, headers = body_and_headers(SECRET, payload(follow(user, token)))
    await session.post(url + "/line/webhook", data=body, headers=headers)

Every builder takes ``**overrides`` for the event's top-level keys: ``mode``
("active"/"standby"), ``timestamp`` (ms), ``webhookEventId``, ``deliveryContext``
(``{"isRedelivery": True}`` for a redelivered event), or an event-specific one such as
``follow={"isUnblocked": True}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Final

__all__ = [
    "DESTINATION",
    "body_and_headers",
    "follow",
    "payload",
    "postback",
    "sign",
    "sticker_message",
    "text_message",
    "unfollow",
    "webhook_event_id",
]

DESTINATION: Final = "U" + "f" * 32  # the bot's own user id
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def sign(channel_secret: str, body: bytes) -> str:
    """``X-Line-Signature``: base64 of the body's HMAC-SHA256 under the channel secret."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def webhook_event_id(timestamp_ms: int | None = None) -> str:
    """A fresh ULID (26 Crockford base32 characters: 48-bit ms time + 80 random bits)."""
    ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    value = (ms & (2**48 - 1)) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _message_id() -> str:
    return str(secrets.randbelow(9 * 10**17) + 10**17)


def _event(kind: str, user_id: str, overrides: dict[str, Any], **fields: Any) -> dict[str, Any]:
    timestamp = int(time.time() * 1000)
    event: dict[str, Any] = {
        "type": kind,
        **fields,
        "mode": "active",
        "timestamp": timestamp,
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": webhook_event_id(timestamp),
        "deliveryContext": {"isRedelivery": False},
    }
    event.update(overrides)
    return event


def follow(user_id: str, reply_token: str, **overrides: Any) -> dict[str, Any]:
    """The user added the account as a friend (``follow={"isUnblocked": True}``: unblocked it)."""
    return _event(
        "follow", user_id, overrides, replyToken=reply_token, follow={"isUnblocked": False}
    )


def unfollow(user_id: str, **overrides: Any) -> dict[str, Any]:
    """The user blocked the account. Unfollow events carry no reply token."""
    return _event("unfollow", user_id, overrides)


def postback(user_id: str, reply_token: str, data: str, **overrides: Any) -> dict[str, Any]:
    """The user tapped a postback action carrying ``data``."""
    return _event("postback", user_id, overrides, replyToken=reply_token, postback={"data": data})


def text_message(user_id: str, reply_token: str, text: str, **overrides: Any) -> dict[str, Any]:
    """The user sent the account a text message."""
    message = {
        "id": _message_id(),
        "type": "text",
        "text": text,
        "quoteToken": secrets.token_urlsafe(48),
        "markAsReadToken": secrets.token_urlsafe(24),
    }
    return _event("message", user_id, overrides, replyToken=reply_token, message=message)


def sticker_message(user_id: str, reply_token: str, **overrides: Any) -> dict[str, Any]:
    """The user sent the account a sticker (one of LINE's own basic stickers)."""
    message = {
        "id": _message_id(),
        "type": "sticker",
        "packageId": "446",
        "stickerId": "1988",
        "stickerResourceType": "STATIC",
        "keywords": ["Happy"],
        "quoteToken": secrets.token_urlsafe(48),
    }
    return _event("message", user_id, overrides, replyToken=reply_token, message=message)


def payload(*events: dict[str, Any], destination: str = DESTINATION) -> dict[str, Any]:
    """A webhook request body; no events at all is LINE's connection check."""
    return {"destination": destination, "events": list(events)}


def body_and_headers(channel_secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The exact bytes LINE would POST, and its headers (signature over those bytes)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Line-Signature": sign(channel_secret, body),
    }
    return body, headers
