"""The one rule for a notice's text, through every way in: the models, the HTTP API, CAP,
the console's forms and the intake stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import MultiDict
from pydantic import ValidationError

from notifier import alerts, intake
from notifier.cap import parse
from notifier.config import Settings
from notifier.dispatch import Dispatcher
from notifier.models import Alert, Announcement, Invalid, field_errors
from notifier.runtime import Runtime
from notifier.web import forms
from tests.conftest import Api, announcement
from tests.notifier.test_cap import LIMIT, cap

LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]
LINE_BREAKS += ["\u2028", "\u2029"]
CONTROLS = ["\t", "\x00", "\x07", "\x1b", "\x1b[31m", "\x1f", "\x7f", "\x80", "\x9b", "\x9f"]
DIRECTION = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068"]
DIRECTION += ["\u2069", "\u200e", "\u200f", "\u061c"]
NOT_TEXT = ["\ufeff", "\ufffe", "\uffff", "\ufdd0", "\ufdef", "\U0001fffe", "\U0010ffff"]
SURROGATES = ["\ud800", "\udfff", "\udc00x"]


def errors(data: dict[str, Any], settings: Settings) -> dict[str, str]:
    """The field errors of an announcement, or {} when it is accepted."""
    try:
        Announcement.model_validate(data, context={"ward": settings.ward})
    except ValidationError as e:
        return field_errors(e)
    return {}


def accepted(settings: Settings, **fields: Any) -> Announcement:
    return Announcement.model_validate(announcement(**fields), context={"ward": settings.ward})


@pytest.mark.parametrize("bad", LINE_BREAKS)
def test_a_title_is_one_line(settings: Settings, bad: str) -> None:
    title = f"避難指示{bad}Bcc: x@evil.example"
    assert errors(announcement(title=title), settings) == {
        "title": "must be one line (no line breaks)"
    }
    translated = announcement(translations={"en": {"title": f"Evacuate{bad}now", "body": "B"}})
    assert errors(translated, settings) == {
        "translations.en.title": "must be one line (no line breaks)"
    }


def test_a_line_break_at_a_titles_ends_is_trimmed(settings: Settings) -> None:
    assert accepted(settings, title="\r\n 避難指示\u3000\n").title == "避難指示"


@pytest.mark.parametrize("bad", CONTROLS)
def test_a_title_has_no_control_characters(settings: Settings, bad: str) -> None:
    assert errors(announcement(title=f"避難{bad}指示"), settings) == {
        "title": "must not contain control characters (tabs, NUL, escape …)"
    }


@pytest.mark.parametrize("bad", DIRECTION)
@pytest.mark.parametrize("field", ["title", "body"])
def test_no_direction_controls(settings: Settings, field: str, bad: str) -> None:
    found = errors(announcement(**{field: f"invoice{bad}fdp.exe"}), settings)
    assert list(found) == [field] and found[field].startswith("must not contain direction")


@pytest.mark.parametrize("bad", NOT_TEXT)
@pytest.mark.parametrize("field", ["title", "body"])
def test_no_byte_order_marks_or_noncharacters(settings: Settings, field: str, bad: str) -> None:
    assert errors(announcement(**{field: f"お知らせ{bad}"}), settings) == {
        field: "must not contain U+FEFF or noncharacters (U+FFFE, U+FFFF …)"
    }


@pytest.mark.parametrize("bad", SURROGATES)
@pytest.mark.parametrize("field", ["title", "body", "url"])
def test_no_lone_surrogates(settings: Settings, field: str, bad: str) -> None:
    value = "https://www.city.nerima.tokyo.jp/" + bad if field == "url" else f"お知らせ{bad}"
    assert errors(announcement(**{field: value}), settings) == {
        field: "must be valid Unicode text (a lone surrogate is not)"
    }


def test_a_body_keeps_its_line_breaks_as_line_feeds(settings: Settings) -> None:
    body = "一行目\r\n二行目\r三行目\u2028四行目\u2029五行目\n\n六行目\tの表"
    assert accepted(settings, body=body).body == (
        "一行目\n二行目\n三行目\n四行目\n\n五行目\n\n六行目 の表"
    )
    en = accepted(settings, translations={"en": {"title": "T", "body": "a\r\nb"}})
    assert en.translations["en"].body == "a\nb"


def test_a_body_is_counted_once_its_line_breaks_are_line_feeds(settings: Settings) -> None:
    assert len(accepted(settings, body="字\r\n" * 2500).body) == 4999  # 7,500 as sent
    assert list(errors(announcement(body="字\n" * 2501), settings)) == ["body"]


@pytest.mark.parametrize("bad", [c for c in CONTROLS if c != "\t"] + ["\x0b", "\x0c", "\x85"])
def test_a_body_has_no_other_control_characters(settings: Settings, bad: str) -> None:
    assert errors(announcement(body=f"本文{bad}です"), settings) == {
        "body": "must not contain control characters other than line breaks"
    }


def test_messages_never_repeat_the_value(settings: Settings) -> None:
    value = "山田花子 090-1234-5678"
    bad = {
        "title": f"{value}\r\nBcc: x@evil.example",
        "body": f"{value}\x00",
        "url": f'https://www.city.nerima.tokyo.jp/?{value}"',
        "translations": {"en": {"title": f"{value}\u202e", "body": "B"}},
    }
    found = errors(announcement(**bad), settings)
    assert set(found) == {"title", "body", "url", "translations.en.title"}
    assert not any("090" in message or "Bcc" in message for message in found.values())


GOOD_LINKS = [
    "https://www.city.nerima.tokyo.jp/",
    "https://www.city.nerima.tokyo.jp",
    "https://www.city.nerima.tokyo.jp/kurashi/gomi/a.html?x=1&y=2#top",
    "https://city.nerima.tokyo.jp:8443/a/b;c=d/e,f/~g/(h)/*i*/+j/!k/$l/@m:n",
    "https://xn--eckwd4c7c.xn--zckzah/%E7%B7%B4%E9%A6%AC",
    "https://www.city.nerima.tokyo.jp/?q=a/b?c#d/e?f",
    "https://WWW.CITY.NERIMA.TOKYO.JP/",
    "https://www.city.nerima.tokyo.jp/" + "a" * (1000 - 33),
]
BAD_LINKS = [
    'https://a.b/"><script>alert(1)</script>',
    "https://www.city.nerima.tokyo.jp/'onmouseover='x",
    "https://www.city.nerima.tokyo.jp/<b>",
    "https://www.city.nerima.tokyo.jp/a b",
    "https://www.city.nerima.tokyo.jp/a\\b",
    "https://www.city.nerima.tokyo.jp/a\nb",
    "https://www.city.nerima.tokyo.jp/{x}",
    "https://www.city.nerima.tokyo.jp/a|b^c`d",
    "https://www.city.nerima.tokyo.jp/%zz",
    "https://www.city.nerima.tokyo.jp/#a#b",
    "https://www.city.nerima.tokyo.jp/練馬区",
    "https://練馬区.jp/",
    "javascript:alert(1)",
    "JAVASCRIPT://www.city.nerima.tokyo.jp/%0Aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/kurashi/gomi/",
    "//www.city.nerima.tokyo.jp/",
    "www.city.nerima.tokyo.jp",
    "http://www.city.nerima.tokyo.jp/",
    "HTTPS://www.city.nerima.tokyo.jp/",
    "https:/www.city.nerima.tokyo.jp/",
    "https://",
    "https://localhost/",
    "https://1.2.3.4/",
    "https://[::1]/",
    "https://www.city.nerima.tokyo.jp@evil.example/",
    "https://user:pass@www.city.nerima.tokyo.jp/",
    "https://-a.jp/",
    "https://a-.jp/",
    "https://a..jp/",
    "https://a.jp:0/",
    "https://a.jp:65536/",
    "https://a.jp:/",
    "https://" + "a" * 64 + ".jp/",
]


@pytest.mark.parametrize("link", GOOD_LINKS)
def test_links_that_rfc_3986_and_line_take_are_accepted(settings: Settings, link: str) -> None:
    assert accepted(settings, url=link).url == link


@pytest.mark.parametrize("link", BAD_LINKS)
def test_links_with_quotes_brackets_spaces_or_no_host_are_refused(
    settings: Settings, link: str
) -> None:
    found = errors(announcement(url=link), settings)
    assert list(found) == ["url"] and found["url"].startswith("must be an https:// link")


def test_a_link_is_at_most_a_thousand_characters(settings: Settings) -> None:
    link = "https://www.city.nerima.tokyo.jp/" + "a" * (1001 - 33)
    assert errors(announcement(url=link), settings) == {
        "url": "must be at most 1,000 characters (LINE's limit for a link)"
    }


@pytest.mark.parametrize(("kind", "article"), [("cancel", "a"), ("update", "an")])
def test_an_update_or_a_cancel_names_the_alert_it_follows(
    settings: Settings, kind: str, article: str
) -> None:
    data = {"title": "T", "body": "B", "severity": "warning", "areas": [], "type": kind}
    with pytest.raises(ValidationError) as caught:
        Alert.model_validate(data, context={"ward": settings.ward})
    assert field_errors(caught.value) == {
        "references": f"{article} {kind} names the alert it follows"
    }


def cap_info(headline: str, description: str = "大雨です。", web: str = "") -> str:
    return f"""<info><language>ja-JP</language><category>Met</category>
    <event>大雨特別警報</event><urgency>Immediate</urgency><severity>Extreme</severity>
    <certainty>Observed</certainty><headline>{headline}</headline>
    <description>{description}</description>{web}
    <area><areaDesc>東京都練馬区</areaDesc></area></info>"""


def desk_json(alert: dict[str, Any]) -> dict[str, Any]:
    """A CAP message's alert as the desk validates it (a drill is a query parameter)."""
    return {k: v for k, v in alert.items() if k != "drill"}


@pytest.mark.parametrize("entity", ["&#10;", "&#13;&#10;", "&#x2028;", "&#9;", "&#x202E;"])
def test_a_cap_headline_with_a_line_break_or_control_is_refused(
    settings: Settings, entity: str
) -> None:
    document = cap(info=cap_info(f"避難指示{entity}Bcc: x@evil.example"))
    message = parse(document, settings.ward, LIMIT)
    with pytest.raises(Invalid) as caught:
        alerts.validate(desk_json(message.alert), settings)
    assert list(caught.value.fields) == ["title"]


def test_a_cap_description_keeps_its_line_breaks_and_loses_its_tabs(settings: Settings) -> None:
    info = cap_info("練馬区に大雨特別警報", description="&#9;一行目&#13;&#10;&#9;二行目&#13;三行目")
    message = parse(cap(info=info), settings.ward, LIMIT)
    assert alerts.validate(desk_json(message.alert), settings).body == "一行目\n 二行目\n三行目"


async def test_a_cap_headline_with_a_line_break_is_a_400_naming_the_cap_element(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    document = cap(info=cap_info("避難指示&#10;Bcc: x@evil.example"))
    status, body = await api.call(
        "POST",
        "/api/alerts",
        tokens["emergency"],
        data=document,
        headers={"Content-Type": "application/cap+xml"},
    )
    assert status == 400 and body["error"]["code"] == "invalid"
    assert body["error"]["fields"] == {"alert/info/title": "must be one line (no line breaks)"}
    assert await runtime.redis.xlen(runtime.keys.intake_urgent) == 0


async def test_the_api_refuses_bad_text_naming_each_field_and_queues_nothing(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    bad = announcement(
        title="避難指示\r\nBcc: x@evil.example",
        body="\x1b[2J本文",
        url='https://a.b/"><script>alert(1)</script>',
        translations={"en": {"title": "Notice\u202e", "body": "B"}},
    )
    status, body = await api.call("POST", "/api/announcements", tokens["staff"], json=bad)
    assert status == 400 and body["error"]["code"] == "invalid"
    assert set(body["error"]["fields"]) == {"title", "body", "url", "translations.en.title"}
    raw = json.dumps(announcement(title="お知らせ\ud800")).encode()  # \ud800, escaped: JSON
    status, body = await api.call(
        "POST",
        "/api/announcements",
        tokens["staff"],
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and list(body["error"]["fields"]) == ["title"]
    assert await runtime.redis.xlen(runtime.keys.intake) == 0


def test_the_console_shows_the_rule_in_japanese(settings: Settings) -> None:
    form = MultiDict(
        [
            ("title", "避難指示\r\nBcc: x@evil.example"),
            ("body", "本文\x00"),
            ("topics", "garbage"),
            ("url", "https://www.city.nerima.tokyo.jp/ a"),
            ("title_en", "Evacuate\u202e"),
            ("body_en", "Now"),
        ]
    )
    with pytest.raises(Invalid) as caught:
        intake.validate(forms.announcement(form, settings), settings)
    shown = forms.japanese(caught.value.fields, settings, forms.COMPOSE)
    assert shown == {
        "title": "件名は改行や特殊な文字を含めず、1〜100文字で入力してください。",
        "body": forms.IN_JAPANESE["body"].format("本文"),
        "url": forms.IN_JAPANESE["url"].format("リンク"),
        "translations.en": forms.TRANSLATION.format(lang="English"),
    }
    assert "特殊な文字" in shown["body"] and "1,000文字" in shown["url"]
    assert "改行" in shown["translations.en"]


def test_the_desk_names_its_fields_as_its_form_labels_them(settings: Settings) -> None:
    form = MultiDict([("title", ""), ("body", "本文\x00"), ("url", "http://x")])
    with pytest.raises(Invalid) as caught:
        alerts.validate(forms.alert(form), settings)
    assert forms.japanese(caught.value.fields, settings, forms.DESK) == {
        "title": "見出しは改行や特殊な文字を含めず、1〜100文字で入力してください。",
        "body": "「何が起きたか・何をすべきか・どこへ行くか」は特殊な文字"
        "（制御文字や文字の向きを変える記号など）を含めず、1〜5,000文字で入力してください。",
        "severity": "緊急度を選んでください。",
        "url": forms.IN_JAPANESE["url"].format("リンク"),
    }


def test_a_field_the_form_does_not_name_gets_a_plain_message(settings: Settings) -> None:
    shown = forms.japanese({"channels": "at least 1", "supersedes": "no"}, settings, forms.DESK)
    assert shown == {"channels": forms.UNNAMED, "supersedes": "更新する警報が見つかりません。"}


def test_the_consoles_crlf_body_is_the_apis_lf_body(settings: Settings) -> None:
    form = MultiDict([("title", "題"), ("body", "一\r\n\r\n二"), ("topics", "garbage")])
    notice = intake.validate(forms.announcement(form, settings), settings)
    assert notice.body == "一\n\n二"


async def test_an_intake_entry_without_areas_is_for_the_whole_ward(runtime: Runtime) -> None:
    rt = runtime
    dispatcher = Dispatcher(
        rt.settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics
    )
    data = announcement(channels=["x"])
    del data["areas"]
    raw = json.dumps(data)
    entry = (await rt.redis.xadd(rt.keys.intake, {"notice": raw})).decode()
    await dispatcher.handle(entry, {b"notice": raw.encode()})
    assert await rt.redis.xlen(rt.keys.rejected) == 0
    (stored,) = await rt.notices.list()
    assert stored["notice"]["areas"] == []


async def test_an_intake_entry_with_a_line_break_in_its_title_is_rejected_with_its_reason(
    runtime: Runtime,
) -> None:
    rt = runtime
    dispatcher = Dispatcher(
        rt.settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics
    )
    raw = json.dumps(announcement(title="避難指示\r\nBcc: x@evil.example", body="本文\u202e"))
    entry = (await rt.redis.xadd(rt.keys.intake, {"notice": raw})).decode()
    await dispatcher.handle(entry, {b"notice": raw.encode()})
    ((_, fields),) = await rt.redis.xrange(rt.keys.rejected)
    assert json.loads(fields[b"reason"]) == {  # the kind first: the stream takes alerts too
        "announcement.title": "must be one line (no line breaks)",
        "announcement.body": "must not contain direction controls (U+202A–U+202E, "
        "U+2066–U+2069, U+200E, U+200F, U+061C)",
    }
    assert fields[b"notice"].decode() == raw
    assert await rt.redis.zcard(rt.keys.notices) == 0
