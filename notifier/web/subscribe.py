"""Email subscription: a form, double opt-in by a confirmation link, a settings page,
one-click unsubscribe; every page and mail in the resident's language.

An address receives notices only after its owner opens the confirmation link (valid
48 hours, once; opened again, it says the address is registered). Every notice mail
links to the recipient's settings page and unsubscribe page by their own opaque token
(``SubscriberStore.unsubscribe_tokens``): no password. Changing settings or leaving
takes a POST (a mail client's RFC 8058 one-click POST, or the page's button, whose form
carries a CSRF value signed for that token): a link scanner's GET changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
from aiohttp import web
from itsdangerous import Signer
from pydantic import ValidationError

from channels.email import OUTBOX_SENDER
from channels.outbox import write_atomic
from channels.smtp_pool import SmtpPool
from notifier.i18n import HTML_LANG, N_, joined, speaker
from notifier.logs import event
from notifier.models import Subscriber, field_errors
from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.web.app import RUNTIME, log, read_form
from notifier.web.guard import over
from notifier.web.session import csrf_ok, signer

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
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # as secrets.token_urlsafe makes them
USED = ":used"  # a used confirmation token's key: who it registered, for the same 48 hours


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


async def confirm(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    if not TOKEN.match(token):
        return await confirmed_before(request, "-")
    store = runtime.subscribers
    raw = await runtime.redis.getdel(runtime.keys.confirmation(token))
    if raw is None:
        return await confirmed_before(request, token)
    sub = store.validate(json.loads(store.sealer.open(as_text(raw))))
    ((subscriber_id, created),) = await store.save([sub])
    used = runtime.keys.confirmation(token + USED)
    await runtime.redis.set(used, subscriber_id, ex=CONFIRM_TTL)
    await runtime.audit.resident("email.subscribe", subscriber_id, request.remote or "unknown")
    event(log, "subscribe.confirmed", subscriber=subscriber_id, created=created)
    return await as_chosen(
        request,
        sub.language,
        (subscriber_id, sub),
        N_("登録が完了しました"),
        N_("これから、選んだ地域と分野のお知らせをメールでお届けします。"),
        N_("設定は、お知らせメールの下にあるリンクから、いつでも変えられます。"),
    )


async def confirmed_before(request: web.Request, token: str) -> web.Response:
    """A confirmation link opened again: registered already, or of no use (expired)."""
    runtime = request.app[RUNTIME]
    found = await runtime.redis.get(runtime.keys.confirmation(token + USED))
    subscriber_id = as_text(found) if found else None
    sub = await runtime.subscribers.get(subscriber_id) if subscriber_id else None
    if subscriber_id is None or sub is None:
        return not_found(
            request,
            N_("このリンクは使えません"),
            N_("期限が切れたか、すでに使われたリンクです。もう一度登録してください。"),
        )
    return await as_chosen(
        request,
        language(request, sub.language),
        (subscriber_id, sub),
        N_("すでに登録されています"),
        N_("このメールアドレスは登録が済んでいます。いまの設定です。"),
    )


async def as_chosen(
    request: web.Request, lang: str, who: tuple[str, Subscriber], heading: str, *lines: str
) -> web.Response:
    """A page that shows a subscriber's choices, with the link to change them."""
    subscriber_id, sub = who
    store, _ = request.app[RUNTIME].subscribers, speaker(lang)
    (token,) = (await store.unsubscribe_tokens([subscriber_id])).values()
    link = {"href": f"/subscribe/settings/{token}?lang={lang}", "label": _("設定を変える")}
    words = [_(line) for line in lines]
    return message_page(request, lang, 200, _(heading), *words, link=link, choices=sub)


async def resident(request: web.Request) -> tuple[str, Subscriber] | None:
    """The subscriber whose token the path holds, if still subscribed."""
    store = request.app[RUNTIME].subscribers
    subscriber_id = await store.by_unsubscribe_token(request.match_info["token"])
    sub = await store.get(subscriber_id) if subscriber_id else None
    return (str(subscriber_id), sub) if sub is not None else None


def stopped(request: web.Request) -> web.Response:
    return not_found(
        request,
        N_("配信は停止されています"),
        N_("このアドレスへのお知らせメールは、すでに停止しています。"),
    )


def not_found(request: web.Request, heading: str, line: str) -> web.Response:
    """A link of no use (any more), said in the browser's language, with the way back."""
    _ = speaker(lang := language(request))
    link = {"href": f"/subscribe?lang={lang}", "label": _("登録ページへ")}
    return message_page(request, lang, 404, _(heading), _(line), link=link)


async def csrf_for(runtime: Runtime, token: str) -> str:
    """The settings form's CSRF value: signed for the resident's own token."""
    keys = (await signer(runtime)).secret_keys
    value = Signer(keys, salt="notifier.resident.settings").get_signature(token)
    return value.decode()


async def settings_form(request: web.Request) -> web.Response:
    found = await resident(request)
    if found is None:
        return stopped(request)
    sub = found[1]
    return await settings_page(request, language(request, sub.language), sub.model_dump(), {})


async def settings_page(
    request: web.Request, lang: str, values: dict[str, Any], errors: dict[str, str]
) -> web.Response:
    token = request.match_info["token"]
    return page(
        request,
        "web/settings.html",
        lang,
        400 if errors else 200,
        values=values,
        errors=errors,
        token=token,
        csrf=await csrf_for(request.app[RUNTIME], token),
    )


async def save_settings(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    data = await read_form(request)
    found = await resident(request)
    if found is None:
        return stopped(request)
    subscriber_id, old = found
    lang = language(request, old.language)
    if not csrf_ok(await csrf_for(runtime, request.match_info["token"]), data.get("csrf")):
        _ = speaker(lang)
        return message_page(
            request,
            lang,
            403,
            _("保存できませんでした"),
            _("お知らせメールの下にあるリンクから、もう一度このページを開いてください。"),
        )
    values = {**typed(data, old.language), "address": old.address}
    store = runtime.subscribers
    try:
        sub = store.validate({"channel": "email", **values})
    except ValidationError as e:
        return await settings_page(request, lang, values, errors_in(e, lang))
    await store.save([sub])
    await runtime.audit.resident("email.settings", subscriber_id, request.remote or "unknown")
    event(log, "subscribe.settings", subscriber=subscriber_id)
    return await as_chosen(
        request,
        sub.language,
        (subscriber_id, sub),
        N_("設定を保存しました。"),
        N_("これから、選んだ地域と分野のお知らせをメールでお届けします。"),
    )


async def unsubscribe_page(request: web.Request) -> web.Response:
    found = await resident(request)
    if found is None:
        return stopped(request)
    lang = language(request, found[1].language)
    _ = speaker(lang)
    token = request.match_info["token"]
    return message_page(
        request,
        lang,
        200,
        _("お知らせメールの配信を停止しますか"),
        _("下のボタンを押すと配信を停止し、メールアドレスを削除します。"),
        button={"action": f"/unsubscribe/{token}?lang={lang}", "label": _("配信を停止する")},
        link={"href": f"/subscribe/settings/{token}?lang={lang}", "label": _("設定を変える")},
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """The page's button, or a mail client's one-click POST (RFC 8058)."""
    runtime = request.app[RUNTIME]
    found = await resident(request)
    lang = language(request, found[1].language if found else None)
    if found is not None:
        subscriber_id = found[0]
        await runtime.subscribers.delete(subscriber_id)
        await runtime.audit.resident(
            "email.unsubscribe", subscriber_id, request.remote or "unknown"
        )
        event(log, "unsubscribe", subscriber=subscriber_id)
    _ = speaker(lang)
    return message_page(
        request,
        lang,
        200,
        _("配信を停止しました"),
        _("メールアドレスは削除しました。ご利用ありがとうございました。"),
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
    r.add_get("/subscribe/settings/{token}", settings_form)
    r.add_post("/subscribe/settings/{token}", save_settings)
    r.add_get("/unsubscribe/{token}", unsubscribe_page)
    r.add_post("/unsubscribe/{token}", unsubscribe)
    app.cleanup_ctx.append(postman_context)
