"""Email subscription: the form, and the mail with its confirmation link (double opt-in);
the pages' language and look, which the resident's own pages (``resident``) share.

An address receives notices only after its owner opens the confirmation link (valid
48 hours, once): ``resident`` answers it, and the settings and unsubscribe pages.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import unicodedata
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
from aiohttp import web
from pydantic import ValidationError

from channels.email import OUTBOX_SENDER
from channels.outbox import write_atomic
from channels.smtp_pool import SmtpPool
from notifier.i18n import HTML_LANG, N_, joined, speaker
from notifier.logs import event
from notifier.models import Subscriber, field_errors
from notifier.runtime import Runtime
from notifier.web.guard import over
from notifier.web.http import RUNTIME, read_form

log = logging.getLogger(__name__)
ERRORS = {  # said in the page's language (N_: translated when shown)
    "address": N_("メールアドレスを確かめてください（例：nerima@example.jp）。"),
    "areas": N_("地域は一覧から選んでください。"),
    "topics": N_("分野は一覧から選んでください。"),
    "language": N_("言語は一覧から選んでください。"),
}
UNNAMED = N_("入力を確かめてください。")
HALF_WIDTH = N_("半角英数字で入力してください。")
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

    @property
    def domain(self) -> str:
        """The domain residents' carriers must let mail in from (docomo, au, SoftBank)."""
        return self.sender.rpartition("@")[2]

    async def send(self, message: EmailMessage, recipient: str, name: str) -> None:
        message["From"] = self.sender
        message["To"] = recipient
        message["Date"] = format_datetime(datetime.now(self.runtime.settings.tz))
        message["Message-ID"] = make_msgid(domain=self.domain)
        if self.pool is not None:
            await self.pool.send(message, self.sender, recipient)
            return
        path = self.runtime.settings.outbox_dir / "email" / f"{name}.eml"
        await asyncio.to_thread(write_atomic, path, message.as_bytes())

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


POSTMAN = web.AppKey("postman", Postman)


def language(request: web.Request, fallback: str | None = None) -> str:
    """The page's language: ``?lang=`` if the ward offers it, else ``fallback`` (the
    resident's own), else the first of the browser's languages the ward offers, else ja."""
    offered = request.app[RUNTIME].settings.ward.language_codes
    asked = request.query.get("lang", "")
    if asked in offered:
        return asked
    if fallback in offered:
        return str(fallback)
    for tag in accepted(request.headers.get("Accept-Language", "")):
        if tag.partition("-")[0] in offered:
            return tag.partition("-")[0]
    return "ja"


def accepted(header: str) -> list[str]:
    """An Accept-Language header's tags, lower case, the most wanted first."""
    weighted = []
    for i, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        q = params.strip().removeprefix("q=")
        try:
            weight = float(q) if params else 1.0
        except ValueError:
            continue
        if tag and weight > 0:
            weighted.append((-weight, i, tag.strip().lower()))
    return [tag for _, _, tag in sorted(weighted)]


def page(
    request: web.Request, name: str, lang: str, status: int = 200, **values: Any
) -> web.Response:
    runtime = request.app[RUNTIME]
    html = runtime.templates.page(name, **said(runtime, lang), path=request.path, **values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def said(runtime: Runtime, lang: str) -> dict[str, Any]:
    """What a page or mail needs to speak ``lang``: ``_``, its names, its HTML tag."""
    return {
        "lang": lang,
        "_": speaker(lang),
        "html_lang": HTML_LANG.get(lang, lang),
        "ward_name": runtime.settings.ward.label(lang),
    }


def message_page(
    request: web.Request,
    lang: str,
    status: int,
    heading: str,
    *lines: str,
    button: dict[str, str] | None = None,
    link: dict[str, str] | None = None,
    choices: Subscriber | None = None,
) -> web.Response:
    """A heading and lines already said in ``lang``; a button (POST), a link, the choices."""
    chosen = chosen_in(request.app[RUNTIME], choices, lang) if choices else None
    return page(
        request,
        "web/message.html",
        lang,
        status,
        heading=heading,
        lines=lines,
        button=button,
        link=link,
        chosen=chosen,
    )


def chosen_in(runtime: Runtime, sub: Subscriber, lang: str) -> list[tuple[str, str]]:
    """A subscriber's areas, topics and language, as ``lang`` names them."""
    ward, _ = runtime.settings.ward, speaker(lang)
    areas = [ward.area(code).label(lang) for code in sub.areas]
    topics = [ward.topic(code).label(lang) for code in sub.topics]
    names = {item.code: item.name for item in ward.languages}
    return [
        (_("地域"), joined(areas, lang) if areas else _("区内全域")),
        (_("分野"), joined(topics, lang) if topics else _("すべての分野")),
        (_("言語"), names[sub.language]),
    ]


def typed(data: Any, lang: str) -> dict[str, Any]:
    """A form's choices as the resident sent them (the address as typed, made half-width
    and without spaces: ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ is hanako@example.jp)."""
    address = unicodedata.normalize("NFKC", str(data.get("address", "")))
    return {
        "address": "".join(address.split()),
        "areas": [str(v) for v in data.getall("areas", [])],
        "topics": [str(v) for v in data.getall("topics", [])],
        "language": str(data.get("language", lang)),
    }


def errors_in(e: ValidationError, lang: str) -> dict[str, str]:
    """Each field's message in ``lang``; a bad address also asks for half-width."""
    _ = speaker(lang)
    errors = {f: _(ERRORS.get(f, UNNAMED)) for f in field_errors(e)}
    if "address" in errors:
        space = "" if lang in ("ja", "easy", "zh") else " "  # after 。 no space
        errors["address"] += space + _(HALF_WIDTH)
    return errors


async def form(request: web.Request) -> web.Response:
    lang = language(request)
    values = {"areas": [], "topics": [], "language": lang}
    return page(request, "web/subscribe.html", lang, values=values, errors={})


async def subscribe(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    lang = language(request)
    values = typed(await read_form(request), lang)
    store = runtime.subscribers
    try:
        sub = store.validate({"channel": "email", **values})
    except ValidationError as e:
        errors = errors_in(e, lang)
        return page(request, "web/subscribe.html", lang, 400, values=values, errors=errors)
    lang = sub.language
    _ = speaker(lang)
    k = runtime.keys
    client = request.remote or "unknown"
    digest = store.lookup_hash("email", sub.address)
    if await over(runtime, f"subscribe:ip:{client}", *PER_IP) or (
        await over(runtime, f"subscribe:addr:{digest}", *PER_ADDRESS)
    ):
        return message_page(
            request,
            lang,
            429,
            _("しばらくしてからお試しください"),
            _("短い時間に何度も申し込みがありました。時間をおいてもう一度どうぞ。"),
        )
    token = secrets.token_urlsafe(32)
    sealed = store.sealer.seal(sub.model_dump_json())  # an address is personal data, even here
    await runtime.redis.set(k.confirmation(token), sealed, ex=CONFIRM_TTL)
    postman = request.app[POSTMAN]
    until = datetime.now(runtime.settings.tz) + timedelta(seconds=CONFIRM_TTL)
    mail = EmailMessage()
    mail["Subject"] = _("【{ward}】お知らせメール登録の確認").format(
        ward=runtime.settings.ward.label(lang)
    )
    text = runtime.templates.page(
        "email/confirm.txt",
        **said(runtime, lang),
        confirm_url=f"{runtime.settings.public_url}/subscribe/confirm/{token}",
        until=until,
        domain=postman.domain,
    )
    mail.set_content(text, charset="utf-8")
    try:
        await postman.send(mail, sub.address, f"confirm-{digest[:16]}")
    except (aiosmtplib.SMTPException, OSError) as e:
        await runtime.redis.delete(k.confirmation(token))
        event(log, "subscribe.mail_failed", error=type(e).__name__)
        return message_page(
            request,
            lang,
            503,
            _("確認メールを送れませんでした"),
            _("しばらくしてからもう一度お試しください。"),
        )
    event(log, "subscribe.asked", address=digest[:12])
    return page(request, "web/sent.html", lang, until=until, domain=postman.domain)


async def postman_context(app: web.Application) -> AsyncIterator[None]:
    app[POSTMAN] = Postman(app[RUNTIME])
    yield
    await app[POSTMAN].close()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/subscribe", form)
    r.add_post("/subscribe", subscribe)
    app.cleanup_ctx.append(postman_context)
