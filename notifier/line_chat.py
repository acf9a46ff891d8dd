"""The LINE subscription conversation, as pure functions: choices in, replies out.

A resident follows the account, picks an area, topics and a language with quick
replies (postbacks), and can change them any time by sending 設定 or "settings".
Replies are LINE message objects (dicts), ready for a reply request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from notifier.config import Ward

SETTINGS_WORDS = {"設定", "せってい", "settings", "setting"}
QUICK_REPLY_MAX = 13
LABEL_MAX = 20


@dataclass(frozen=True)
class Choices:
    areas: tuple[str, ...] = ()  # () = the whole ward
    topics: tuple[str, ...] = ()  # () = every topic
    language: str = "ja"


def _postback(label: str, **data: str) -> dict[str, Any]:
    return {
        "type": "action",
        "action": {
            "type": "postback",
            "label": label[:LABEL_MAX],
            "data": urlencode(data),
            "displayText": label,
        },
    }


def _text(text: str, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "text", "text": text}
    if items:
        message["quickReply"] = {"items": items[:QUICK_REPLY_MAX]}
    return message


def describe(ward: Ward, choices: Choices) -> str:
    areas = "・".join(ward.area(a).name for a in choices.areas) or "区内全域"
    topics = "・".join(ward.topic(t).name for t in choices.topics) or "すべて"
    language = next(x.name for x in ward.languages if x.code == choices.language)
    return f"地域：{areas}\n分野：{topics}\n言語：{language}"


def ask_area(ward: Ward) -> dict[str, Any]:
    items = [_postback(a.name, do="area", v=a.code) for a in ward.areas]
    items.append(_postback("区内全域", do="area", v="all"))
    return _text("お住まいの地域を選んでください。", items)


def ask_topics(ward: Ward, choices: Choices, lead: str = "") -> dict[str, Any]:
    items = [_postback("すべて", do="topic", v="all")]
    items += [
        _postback(("✓" if t.code in choices.topics else "") + t.name, do="topic", v=t.code)
        for t in ward.topics
    ]
    items.append(_postback("完了", do="done"))
    chosen = "・".join(ward.topic(t).name for t in choices.topics) or "すべて"
    text = (
        f"{lead}受け取る分野：{chosen}\n"
        "分野を選ぶと、選んだ分野だけをお届けします（もう一度選ぶと外れます）。"
        "選び終えたら「完了」を押してください。"
    )
    return _text(text, items)


def ask_language(ward: Ward) -> dict[str, Any]:
    items = [_postback(x.name, do="lang", v=x.code) for x in ward.languages]
    return _text("お知らせの言語を選んでください。\nChoose your language.", items)


def welcome(ward: Ward) -> list[dict[str, Any]]:
    return [
        _text(
            f"{ward.name}のお知らせに登録いただき、ありがとうございます。\n"
            "区からのお知らせと、災害時の緊急情報をお届けします。\n"
            "設定は、あとから「設定」と送ればいつでも変えられます。"
        ),
        ask_area(ward),
    ]


def menu(ward: Ward, choices: Choices) -> list[dict[str, Any]]:
    items = [
        _postback("地域", do="menu", v="area"),
        _postback("分野", do="menu", v="topic"),
        _postback("言語 / Language", do="menu", v="lang"),
    ]
    return [
        _text(f"いまの設定です。\n{describe(ward, choices)}\n変える項目を選んでください。", items)
    ]


def help_text(ward: Ward) -> list[dict[str, Any]]:
    return [
        _text(
            f"このアカウントは{ward.name}からのお知らせ専用です。"
            "設定を変えるときは「設定」と送ってください。\n"
            f"お問い合わせ：{ward.name} {ward.phone}"
        )
    ]


def on_postback(ward: Ward, choices: Choices, data: str) -> tuple[Choices, list[dict[str, Any]]]:
    """Apply a quick reply's postback; return the new choices and the replies."""
    fields = dict(parse_qsl(data))
    do, value = fields.get("do"), fields.get("v", "")
    if do == "area" and (value == "all" or value in ward.area_codes):
        choices = replace(choices, areas=() if value == "all" else (value,))
        area = "区内全域" if value == "all" else ward.area(value).name
        return choices, [ask_topics(ward, choices, lead=f"地域を「{area}」にしました。\n")]
    if do == "topic" and (value == "all" or value in ward.topic_codes):
        if value == "all":
            topics: tuple[str, ...] = ()
        elif value in choices.topics:
            topics = tuple(t for t in choices.topics if t != value)
        else:
            topics = tuple(t for t in ward.topic_codes if t in {*choices.topics, value})
        choices = replace(choices, topics=topics)
        return choices, [ask_topics(ward, choices)]
    if do == "lang" and value in ward.language_codes:
        choices = replace(choices, language=value)
        return choices, [done(ward, choices)]
    if do == "done":
        return choices, [done(ward, choices)]
    if do == "menu" and value in ("area", "topic", "lang"):
        asks = {
            "area": lambda: ask_area(ward),
            "topic": lambda: ask_topics(ward, choices),
            "lang": lambda: ask_language(ward),
        }
        return choices, [asks[value]()]
    return choices, help_text(ward)


def done(ward: Ward, choices: Choices) -> dict[str, Any]:
    english = "\nSaved. Notices will come in English where a translation exists."
    return _text(
        f"設定を保存しました。\n{describe(ward, choices)}\n"
        "災害時の緊急情報は、分野の設定にかかわらずお届けします。"
        "変えるときは「設定」と送ってください。" + (english if choices.language == "en" else "")
    )


def wants_settings(text: str) -> bool:
    return text.strip().lower() in SETTINGS_WORDS
