"""A resident's pages after sign-up: the confirmation link, the settings page, and
one-click unsubscribe; each in the resident's language.

The confirmation link works once, for 48 hours; opened again, it says the address is
registered. Every notice mail links to the recipient's settings page and unsubscribe
page by their own opaque token (``SubscriberStore.unsubscribe_tokens``): no password.
Changing settings or leaving takes a POST (a mail client's RFC 8058 one-click POST, or
the page's button, whose form carries a CSRF value signed for that token): a link
scanner's GET changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web
from itsdangerous import Signer
from pydantic import ValidationError

from notifier.i18n import N_, speaker
from notifier.logs import event
from notifier.models import Subscriber
from notifier.runtime import Runtime
from notifier.streams import as_text
from notifier.web.http import RUNTIME, read_form
from notifier.web.session import csrf_ok, signer
from notifier.web.subscribe import CONFIRM_TTL, errors_in, language, message_page, page, typed

log = logging.getLogger(__name__)
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # as secrets.token_urlsafe makes them
USED = ":used"  # a used confirmation token's key: who it registered, for the same 48 hours


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


async def by_token(request: web.Request) -> tuple[str, Subscriber] | None:
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
    found = await by_token(request)
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
    found = await by_token(request)
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
    found = await by_token(request)
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
    found = await by_token(request)
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


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/subscribe/confirm/{token}", confirm)
    r.add_get("/subscribe/settings/{token}", settings_form)
    r.add_post("/subscribe/settings/{token}", save_settings)
    r.add_get("/unsubscribe/{token}", unsubscribe_page)
    r.add_post("/unsubscribe/{token}", unsubscribe)
