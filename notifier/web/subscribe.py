"""Email subscription: a form, double opt-in by a confirmation link, one-click unsubscribe.

An address receives notices only after its owner opens the confirmation link (valid
48 hours, once). Unsubscribing takes a POST (the page's button, or a mail client's
RFC 8058 one-click POST): a link scanner's GET never unsubscribes anyone.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
from aiohttp import web
from pydantic import ValidationError

from channels.email import OUTBOX_SENDER
from channels.outbox import write_atomic
from channels.smtp_pool import SmtpPool
from notifier.logs import event
from notifier.models import field_errors
from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.web.app import RUNTIME, log, read_form
from notifier.web.guard import over

IN_JAPANESE = {
    "address": "メールアドレスを確かめてください（例：nerima@example.jp）。",
    "areas": "地域は一覧から選んでください。",
    "topics": "分野は一覧から選んでください。",
    "language": "言語は一覧から選んでください。",
}
CONFIRM_TTL = 48 * 3600
PER_IP = (10, 3600)  # subscriptions a client address may ask for, per period (seconds)
PER_ADDRESS = (3, 24 * 3600)  # confirmation mails one address may receive, per period


class Postman:
    """Sends the confirmation mails: over SMTP when configured, else to the outbox."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.pool = SmtpPool(settings, 1) if settings.live("email") else None
        self.sender = settings.mail_from or OUTBOX_SENDER

    async def send(self, message: EmailMessage, recipient: str, name: str) -> None:
        message["From"] = self.sender
        message["To"] = recipient
        message["Date"] = format_datetime(datetime.now(self.runtime.settings.tz))
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2])
        if self.pool is not None:
            await self.pool.send(message, self.sender, recipient)
            return
        path = self.runtime.settings.outbox_dir / "email" / f"{name}.eml"
        await asyncio.to_thread(write_atomic, path, message.as_bytes())

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


POSTMAN = web.AppKey("postman", Postman)


def page(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    html = request.app[RUNTIME].templates.page(name, **values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def message_page(
    request: web.Request,
    status: int,
    heading: str,
    *lines: str,
    button: dict[str, str] | None = None,
) -> web.Response:
    return page(request, "web/message.html", status, heading=heading, lines=lines, button=button)


async def form(request: web.Request) -> web.Response:
    return page(request, "web/subscribe.html", values={"areas": [], "topics": []}, errors={})


async def subscribe(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    data = await read_form(request)
    values = {
        "address": str(data.get("address", "")).strip(),
        "areas": [str(v) for v in data.getall("areas", [])],
        "topics": [str(v) for v in data.getall("topics", [])],
        "language": str(data.get("language", "ja")),
    }
    store = runtime.subscribers
    try:
        sub = store.validate({"channel": "email", **values})
    except ValidationError as e:
        errors = {f: IN_JAPANESE.get(f, "入力を確かめてください。") for f in field_errors(e)}
        return page(request, "web/subscribe.html", 400, values=values, errors=errors)
    k = runtime.keys
    client = request.remote or "unknown"
    digest = store.lookup_hash("email", sub.address)
    if await over(runtime, f"subscribe:ip:{client}", *PER_IP) or (
        await over(runtime, f"subscribe:addr:{digest}", *PER_ADDRESS)
    ):
        return message_page(
            request,
            429,
            "しばらくしてからお試しください",
            "短い時間に何度も申し込みがありました。時間をおいてもう一度どうぞ。",
        )
    token = secrets.token_urlsafe(32)
    sealed = store.sealer.seal(sub.model_dump_json())  # an address is personal data, even here
    await runtime.redis.set(k.confirmation(token), sealed, ex=CONFIRM_TTL)
    mail = EmailMessage()
    mail["Subject"] = f"【{runtime.settings.ward.name}】お知らせメール登録の確認"
    link = f"{runtime.settings.public_url}/subscribe/confirm/{token}"
    mail.set_content(runtime.templates.page("email/confirm.txt", confirm_url=link), charset="utf-8")
    try:
        await request.app[POSTMAN].send(mail, sub.address, f"confirm-{digest[:16]}")
    except (aiosmtplib.SMTPException, OSError) as e:
        await runtime.redis.delete(k.confirmation(token))
        event(log, "subscribe.mail_failed", error=type(e).__name__)
        return message_page(
            request, 503, "確認メールを送れませんでした", "しばらくしてからもう一度お試しください。"
        )
    event(log, "subscribe.asked", address=digest[:12])
    return message_page(
        request,
        200,
        "確認メールを送りました",
        "メールの中のリンクを開くと登録が完了します（48時間有効）。",
    )


async def confirm(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    raw = await runtime.redis.getdel(runtime.keys.confirmation(request.match_info["token"]))
    if raw is None:
        return message_page(
            request,
            404,
            "このリンクは使えません",
            "期限が切れたか、すでに使われたリンクです。もう一度登録してください。",
        )
    store = runtime.subscribers
    sub = store.validate(json.loads(store.sealer.open(as_text(raw))))
    ((subscriber_id, created),) = await store.save([sub])
    await runtime.audit.resident("email.subscribe", subscriber_id, request.remote or "unknown")
    event(log, "subscribe.confirmed", subscriber=subscriber_id, created=created)
    return message_page(
        request,
        200,
        "登録が完了しました",
        "これから、選んだ地域と分野のお知らせをメールでお届けします。",
    )


async def unsubscribe_page(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    if await runtime.subscribers.by_unsubscribe_token(token) is None:
        return message_page(
            request,
            404,
            "配信は停止されています",
            "このアドレスへのお知らせメールは、すでに停止しています。",
        )
    return message_page(
        request,
        200,
        "お知らせメールの配信を停止しますか",
        "下のボタンを押すと配信を停止し、メールアドレスを削除します。",
        button={"action": f"/unsubscribe/{token}", "label": "配信を停止する"},
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """The page's button, or a mail client's one-click POST (RFC 8058)."""
    runtime = request.app[RUNTIME]
    subscriber_id = await runtime.subscribers.by_unsubscribe_token(request.match_info["token"])
    if subscriber_id is not None:
        await runtime.subscribers.delete(subscriber_id)
        await runtime.audit.resident(
            "email.unsubscribe", subscriber_id, request.remote or "unknown"
        )
        event(log, "unsubscribe", subscriber=subscriber_id)
    return message_page(
        request,
        200,
        "配信を停止しました",
        "メールアドレスは削除しました。ご利用ありがとうございました。",
    )


async def postman_context(app: web.Application) -> AsyncIterator[None]:
    app[POSTMAN] = Postman(app[RUNTIME])
    yield
    await app[POSTMAN].close()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/subscribe", form)
    r.add_post("/subscribe", subscribe)
    r.add_get("/subscribe/confirm/{token}", confirm)
    r.add_get("/unsubscribe/{token}", unsubscribe_page)
    r.add_post("/unsubscribe/{token}", unsubscribe)
    app.cleanup_ctx.append(postman_context)
