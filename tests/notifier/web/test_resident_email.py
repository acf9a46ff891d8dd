"""The email path as three residents walk it, each in their own language: a Japanese one
(who types the address full-width), one who reads やさしい日本語 and an English one:
subscribe → confirmation mail → confirm (and again) → a notice mail → its settings link
→ a change → its unsubscribe link → gone. Every page and mail is checked for its language."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.config import Settings, Ward
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.web.subscribe import CONFIRM_TTL, accepted
from notifier.when import local_time
from tests.conftest import wait_for
from tests.notifier.web.test_subscribe import link_in, post_notice, settings, sink, web
from tests.smtp_sink import SmtpSink

__all__ = ["settings", "sink", "web"]  # the fixtures of test_subscribe, used here too

KANA = re.compile(r"[\u3041-\u30ff]")
HAN = re.compile(r"[\u4e00-\u9fff]")
PARENTHESES = re.compile(r"（[^）]*）")  # やさしい日本語 gives a name's kanji in them
TAGS = re.compile(r"<[^>]+>")
SETTINGS_LINK = r"https://\S+/subscribe/settings/[\w-]+"
UNSUBSCRIBE_LINK = r"https://\S+/unsubscribe/[\w-]+"


@dataclass(frozen=True)
class Resident:
    lang: str
    html_lang: str
    typed: str  # the address as they type it
    address: str  # as it is stored
    headers: dict[str, str]  # what their browser says
    words: dict[str, str]  # what each step says to them


JAPANESE = Resident(
    "ja",
    "ja",
    "　ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ ",  # Japanese input: full-width, a space around it
    "hanako@example.jp",
    {"Accept-Language": "ja-JP,ja;q=0.9"},
    {
        "form": "メールでお知らせを受け取る",
        "sent": "確認メールを送りました",
        "subject": "【練馬区】お知らせメール登録の確認",
        "confirmed": "登録が完了しました",
        "again": "すでに登録されています",
        "settings": "お知らせメールの設定",
        "saved": "設定を保存しました。",
        "leave": "お知らせメールの配信を停止しますか",
        "left": "配信を停止しました",
        "allow": "からのメールを受け取れるように",
    },
)
EASY = Resident(
    "easy",
    "ja",
    "taro@example.jp",
    "taro@example.jp",
    {"Accept-Language": "ja"},  # no browser asks for it: chosen on the page
    {
        "form": "メールで おしらせを うけとる",
        "sent": "かくにんの メールを おくりました",
        "subject": "【ねりまく（練馬区）】おしらせメールの とうろくの かくにん",
        "confirmed": "とうろくが おわりました",
        "again": "もう とうろく されて います",
        "settings": "おしらせメールの せってい",
        "saved": "せっていを ほぞんしました。",
        "leave": "おしらせメールを とめますか",
        "left": "メールを とめました",
        "allow": "からの メールを うけとれるように",
    },
)
ENGLISH = Resident(
    "en",
    "en",
    "Emma@Example.com",
    "Emma@example.com",  # the domain in lower case, as stored
    {"Accept-Language": "en-GB,en;q=0.9,ja;q=0.5"},
    {
        "form": "Get notices by email",
        "sent": "We have sent you a confirmation email",
        "subject": "[Nerima City] Please confirm your email notices",
        "confirmed": "You are registered",
        "again": "You are already registered",
        "settings": "Your notice email settings",
        "saved": "Your settings are saved.",
        "leave": "Stop receiving notice emails?",
        "left": "The emails have been stopped",
        "allow": "allow mail from",
    },
)


def shown(html: str) -> str:
    """A page's words: its text, without tags."""
    return unescape(TAGS.sub(" ", html))


def assert_speaks(resident: Resident, text: str, ward: Ward, html: str | None = None) -> None:
    """``text`` is in the resident's language: English holds no Japanese but the names of
    the languages (each named in itself); やさしい日本語 no kanji but in the names'
    parentheses and the times (written as Japanese writes them)."""
    if html is not None:
        assert f'<html lang="{resident.html_lang}">' in html
    names = sorted((x.name for x in ward.languages), key=len, reverse=True)
    for name in names:
        text = text.replace(name, "")
    if resident.lang == "en":
        assert not KANA.search(text) and not HAN.search(text), text
    elif resident.lang == "easy":
        text = PARENTHESES.sub("", re.sub(r"\d+月\d+日（.）午[前後]\d+時\d+分", "", text))
        assert not HAN.search(text), text
    else:
        assert KANA.search(text) and HAN.search(text)


def body_of(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


async def get(session: aiohttp.ClientSession, url: str, resident: Resident) -> tuple[int, str]:
    async with session.get(url, headers=resident.headers) as response:
        return response.status, await response.text()


async def post(
    session: aiohttp.ClientSession, url: str, data: Any, resident: Resident
) -> tuple[int, str]:
    async with session.post(url, data=data, headers=resident.headers) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("resident", [JAPANESE, EASY, ENGLISH], ids=lambda r: r.lang)
async def test_the_email_path_speaks_the_residents_language_end_to_end(
    web: tuple[aiohttp.ClientSession, str],
    runtime: Runtime,
    sink: SmtpSink,
    settings: Settings,
    resident: Resident,
) -> None:
    session, base = web
    ward, words, lang = settings.ward, resident.words, resident.lang

    # the form: in the browser's language, or as chosen on the page
    query = "?lang=easy" if lang == "easy" else ""
    status, html = await get(session, base + "/subscribe" + query, resident)
    assert status == 200 and words["form"] in html
    assert f'href="/subscribe?lang={lang}" ' in html and 'aria-current="true"' in html
    assert f'value="{lang}" checked' in html  # the mails' language: the page's, at first
    assert_speaks(resident, shown(html), ward, html)

    data = {"address": resident.typed, "areas": "oizumi", "topics": "garbage", "language": lang}
    asked = datetime.now(settings.tz)
    status, html = await post(session, f"{base}/subscribe?lang={lang}", data, resident)
    assert status == 200 and words["sent"] in html and "city.nerima.example.jp" in html
    assert_speaks(resident, shown(html), ward, html)

    # the confirmation mail: its language, its deadline as a time, the sender's domain
    (mail,) = sink.messages_to(resident.address)
    assert mail["Subject"] == words["subject"]
    text = body_of(mail)
    assert_speaks(resident, text, ward)
    assert words["allow"] in text and "city.nerima.example.jp" in text
    deadlines = {
        local_time(asked + timedelta(seconds=CONFIRM_TTL + s), settings.tz, lang) for s in (0, 60)
    }
    assert any(deadline in text for deadline in deadlines), text
    confirm = link_in(mail, r"https://\S+/subscribe/confirm/\S+").removeprefix(settings.public_url)

    status, html = await get(session, base + confirm, resident)
    assert status == 200 and words["confirmed"] in html
    assert ward.area("oizumi").label(lang) in html and ward.topic("garbage").label(lang) in html
    assert_speaks(resident, shown(html), ward, html)
    subscriber_id = await runtime.subscribers.find("email", resident.address)
    assert subscriber_id is not None
    status, html = await get(session, base + confirm, resident)  # opened again
    assert status == 200 and words["again"] in html and words["confirmed"] not in html
    assert_speaks(resident, shown(html), ward, html)

    # a notice mail: its footer links to this resident's own settings and unsubscribe pages
    translations = {
        "en": {"title": "Bulky waste days change", "body": "From January, in Oizumi."},
        "easy": {"title": "おおきい ごみの ひが かわります", "body": "1がつから かわります。"},
    }
    result = await post_notice(runtime, areas=["oizumi"], translations=translations)
    assert result["progress"]["email"]["sent"] == 1
    notice = sink.messages_to(resident.address)[-1]
    settings_url = link_in(notice, SETTINGS_LINK)
    unsubscribe_url = link_in(notice, UNSUBSCRIBE_LINK)
    token = settings_url.rsplit("/", 1)[1]
    assert unsubscribe_url.endswith("/" + token) and token in notice["List-Unsubscribe"]
    assert f'href="{settings_url}"' in body_of(notice, "html")
    assert "subscribe\n" not in body_of(notice)  # no more "register again"
    assert_speaks(resident, body_of(notice), ward)

    # the settings page: the choices as they are, changed by a POST with its CSRF value
    own = base + settings_url.removeprefix(settings.public_url)
    status, html = await get(session, own, resident)
    assert status == 200 and words["settings"] in html
    assert 'value="oizumi" checked' in html and 'value="garbage" checked' in html
    assert_speaks(resident, shown(html), ward, html)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    assert action and action[1].startswith(f"/subscribe/settings/{token}")
    change = {"areas": ["nerima", "shakujii"], "topics": "childcare", "language": lang}
    status, html = await post(session, base + action[1], {**change, "csrf": "forged"}, resident)
    assert status == 403
    assert_speaks(resident, shown(html), ward, html)
    sub = await runtime.subscribers.get(subscriber_id)
    assert sub is not None and sub.areas == ["oizumi"]  # a forged form changes nothing
    status, html = await post(session, base + action[1], {**change, "csrf": csrf[1]}, resident)
    assert status == 200 and words["saved"] in html
    assert ward.area("shakujii").label(lang) in html and ward.topic("childcare").label(lang) in html
    assert_speaks(resident, shown(html), ward, html)
    sub = await runtime.subscribers.get(subscriber_id)
    assert sub is not None and sub.address == resident.address
    assert (sub.areas, sub.topics, sub.language) == (["nerima", "shakujii"], ["childcare"], lang)
    assert await runtime.subscribers.find("email", resident.address) == subscriber_id
    entries = await runtime.audit.recent()
    assert [e["action"] for e in entries if e["target"] == subscriber_id][:2] == [
        "email.settings",
        "email.subscribe",
    ]

    # the unsubscribe link: a page that asks, then a POST that removes the address
    path = unsubscribe_url.removeprefix(settings.public_url)
    status, html = await get(session, base + path, resident)
    assert status == 200 and words["leave"] in html
    assert_speaks(resident, shown(html), ward, html)
    button = re.search(r'<form method="post" action="([^"]+)"', html)
    assert button
    status, html = await post(session, base + button[1], {}, resident)
    assert status == 200 and words["left"] in html
    assert_speaks(resident, shown(html), ward, html)
    assert await runtime.subscribers.find("email", resident.address) is None
    assert (await runtime.audit.recent())[0]["action"] == "email.unsubscribe"
    status, html = await get(session, own, resident)
    assert status == 404  # the settings link of an address that left: no page


async def test_a_full_width_address_that_is_still_wrong_says_half_width(
    web: tuple[aiohttp.ClientSession, str], sink: SmtpSink
) -> None:
    session, base = web
    for lang, said in (("ja", "半角英数字で入力してください"), ("en", "half-width")):
        data = {"address": "ｈａｎａｋｏ＠＠ｅｘａｍｐｌｅ"}
        async with session.post(f"{base}/subscribe?lang={lang}", data=data) as response:
            html = await response.text()
        assert response.status == 400 and said in html and 'aria-invalid="true"' in html
        assert 'value="hanako@@example"' in html  # shown as it was made half-width
    assert sink.messages() == []


async def test_the_page_language_follows_the_browser_where_the_ward_offers_it(
    web: tuple[aiohttp.ClientSession, str],
) -> None:
    session, base = web
    for header, html_lang in (
        ("ko-KR,ko;q=0.9,en;q=0.8", "ko"),
        ("fr-FR,fr;q=0.9,zh-CN;q=0.8", "zh-Hans"),  # the first the ward offers
        ("fr-FR,de;q=0.5", "ja"),  # none: Japanese
        ("en;q=0.1,ko;q=0.9", "ko"),
    ):
        async with session.get(base + "/subscribe", headers={"Accept-Language": header}) as r:
            assert f'<html lang="{html_lang}">' in await r.text(), header
    async with session.get(base + "/subscribe?lang=xx", headers={"Accept-Language": "en"}) as r:
        assert '<html lang="en">' in await r.text()  # a language not offered: ignored
    assert accepted("en;q=0, ja;q=bad, ko") == ["ko"]


async def test_an_unknown_or_expired_link_answers_in_the_browsers_language(
    web: tuple[aiohttp.ClientSession, str],
) -> None:
    session, base = web
    english = {"Accept-Language": "en-US"}
    for path in ("/subscribe/confirm/nothing", "/subscribe/confirm/a:used", "/unsubscribe/x"):
        async with session.get(base + path, headers=english) as response:
            html = await response.text()
        assert response.status == 404 and '<html lang="en">' in html, path
        assert not KANA.search(shown(html).replace("日本語", "").replace("やさしい", "")), path


async def test_the_outbox_confirmation_names_the_outbox_senders_domain(
    tmp_path: Path, prefix: str
) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, prefix)  # no SMTP: the mail goes to the outbox
    service = Service(settings)
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{service.port}"
            data = {"address": "jiro@example.jp", "language": "en"}
            async with session.post(base + "/subscribe", data=data) as response:
                assert response.status == 200 and "localhost" in await response.text()
        folder = settings.outbox_dir / "email"

        async def written() -> bool:
            return any(folder.glob("confirm-*.eml"))

        await wait_for(written)
        (mail,) = folder.glob("confirm-*.eml")
        text = mail.read_bytes().decode()
        assert "From: notifier@localhost" in text
    finally:
        await service.stop()
