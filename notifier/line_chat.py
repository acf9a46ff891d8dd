"""The LINE subscription conversation, as pure functions: choices in, replies out.

A resident who follows the account picks, by tapping, a language first (the greeting
asks in every language the ward offers), then an area, then topics; from then on every
reply is in that language (``notifier.i18n``). A button under the saved settings, a
quick reply under every other answer, or 設定 / settings / 设置 / 설정 sent as text,
opens the settings again. Replies are LINE message objects (dicts), ready for a reply
request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from notifier.config import Ward
from notifier.i18n import N_, SOURCE, Say, joined, speaker

# what a resident may send to open the settings, and the language each word is in
SETTINGS_WORDS = {
    "設定": "ja",
    "せってい": "easy",
    "メニュー": "ja",
    "settings": "en",
    "setting": "en",
    "menu": "en",
    "设置": "zh",
    "設置": "zh",
    "菜单": "zh",
    "설정": "ko",
    "메뉴": "ko",
}
# words asking for help: answered with the help text, in the word's language
HELP_WORDS = {"ヘルプ": "ja", "help": "en", "帮助": "zh", "도움말": "ko"}
QUICK_REPLY_MAX = 13
LABEL_MAX = 20  # a quick reply's label
BUTTON_LABEL_MAX = 40  # a Flex button's label


@dataclass(frozen=True)
class Choices:
    areas: tuple[str, ...] = ()  # () = the whole ward
    topics: tuple[str, ...] = ()  # () = every topic
    language: str = "ja"


def _postback(label: str, display: str | None = None, **data: str) -> dict[str, Any]:
    return {
        "type": "action",
        "action": {
            "type": "postback",
            "label": label[:LABEL_MAX],
            "data": urlencode(data),
            "displayText": display or label,
        },
    }


def _text(text: str, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "text", "text": text}
    if items:
        message["quickReply"] = {"items": items[:QUICK_REPLY_MAX]}
    return message


def describe(ward: Ward, choices: Choices) -> str:
    lang = choices.language
    _ = speaker(lang)
    areas = joined([ward.area(a).label(lang) for a in choices.areas], lang)
    topics = joined([ward.topic(t).label(lang) for t in choices.topics], lang)
    language = next(x.name for x in ward.languages if x.code == lang)
    return "\n".join(
        (
            _("地域：{areas}").format(areas=areas or _("すべての地域")),
            _("分野：{topics}").format(topics=topics or _("すべての分野")),
            _("言語：{language}").format(language=language),
        )
    )


def _in_each(ward: Ward, message: str) -> str:
    """``message`` in every language the ward offers, Japanese first, a line each (once
    where two say it alike); ``{ward}`` in it is the ward's name in that language."""
    codes = [SOURCE, *(code for code in ward.language_codes if code != SOURCE)]
    said = (speaker(code)(message).format(ward=ward.label(code)) for code in codes)
    return "\n".join(dict.fromkeys(said))


def ask_language(ward: Ward, signing_up: bool = False) -> dict[str, Any]:
    """The languages as quick replies, each named in itself; asked in every one of them.
    At sign-up, choosing one goes on to the area."""
    then = {"then": "area"} if signing_up else {}
    items = [_postback(x.name, do="lang", v=x.code, **then) for x in ward.languages]
    return _text(_in_each(ward, N_("言語を選んでください。")), items)


def ask_area(ward: Ward, choices: Choices, lead: str = "") -> dict[str, Any]:
    lang = choices.language
    _ = speaker(lang)
    items = [_postback(a.label(lang), do="area", v=a.code) for a in ward.areas]
    items.append(_postback(_("すべての地域"), do="area", v="all"))
    text = (
        lead
        + _("お住まいの地域を選んでください。")
        + "\n"
        + _("「すべての地域」を選ぶと、区内のどの地域のお知らせも届きます。")
    )
    return _text(text, items)


def ask_topics(ward: Ward, choices: Choices, lead: str = "") -> dict[str, Any]:
    """完了 first (it stays in view on a phone), then every topic: tapping one adds it,
    tapping a ticked one (✓) removes it, and the chat says which it did."""
    lang = choices.language
    _ = speaker(lang)
    items = [
        _postback(_("完了"), do="done"),
        _postback(_("すべての分野"), do="topic", v="all"),
    ]
    for topic in ward.topics:
        name = topic.label(lang)
        chosen = topic.code in choices.topics
        said = (_("{topic}を外す") if chosen else _("{topic}を追加")).format(topic=name)
        items.append(_postback(("✓" if chosen else "") + name, said, do="topic", v=topic.code))
    chosen_names = joined([ward.topic(t).label(lang) for t in choices.topics], lang)
    text = (
        lead
        + _("受け取る分野：{topics}").format(topics=chosen_names or _("すべての分野"))
        + "\n"
        + _(
            "分野を押すと追加し、✓の付いた分野を押すと外します。選び終えたら「完了」を押してください。"
        )
    )
    return _text(text, items)


def welcome(ward: Ward) -> list[dict[str, Any]]:
    """The greeting, in every language the ward offers, asking for the language."""
    greeted = _in_each(ward, N_("{ward}のお知らせへようこそ。"))
    return [_text(greeted), ask_language(ward, signing_up=True)]


def _settings_item(say: Say) -> dict[str, Any]:
    return _postback(say("設定"), say("設定を変える"), do="settings")


def menu(ward: Ward, choices: Choices) -> list[dict[str, Any]]:
    lang = choices.language
    _ = speaker(lang)
    language = _("言語") if lang == "en" else _("言語") + " / Language"
    items = [
        _postback(_("地域"), do="menu", v="area"),
        _postback(_("分野"), do="menu", v="topic"),
        _postback(language, do="menu", v="lang"),
    ]
    text = "\n".join(
        (_("いまの設定です。"), describe(ward, choices), _("変える項目を選んでください。"))
    )
    return [_text(text, items)]


def help_text(ward: Ward, choices: Choices) -> list[dict[str, Any]]:
    lang = choices.language
    _ = speaker(lang)
    name = ward.label(lang)
    text = "\n".join(
        (
            _("このアカウントは、{ward}からのお知らせ専用です。").format(ward=name),
            _("設定を変えるときは、下の「設定」を押すか、「設定」と送ってください。"),
            _("お問い合わせ：{ward} {phone}").format(ward=name, phone=ward.phone),
        )
    )
    return [_text(text, [_settings_item(_)])]


def done(ward: Ward, choices: Choices) -> list[dict[str, Any]]:
    """The saved settings, and a button that opens them again: it stays in the chat,
    where quick replies go once another message comes."""
    lang = choices.language
    _ = speaker(lang)
    lines = [_("設定を保存しました。"), describe(ward, choices)]
    lines.append(_("災害時の緊急情報は、分野の設定にかかわらずお届けします。"))
    if lang != SOURCE:
        lines.append(_("お知らせは、この言語の訳があれば訳で、なければ日本語でお届けします。"))
    label = _("設定を変える")[:BUTTON_LABEL_MAX]
    button = {
        "type": "flex",
        "altText": label,
        "contents": {
            "type": "bubble",
            "size": "kilo",
            "body": {
                "type": "box",
                "layout": "vertical",
                "contents": [
                    {
                        "type": "text",
                        "text": _("設定は、いつでもこのボタンから変えられます。"),
                        "wrap": True,
                        "size": "md",
                    }
                ],
            },
            "footer": {
                "type": "box",
                "layout": "vertical",
                "contents": [
                    {
                        "type": "button",
                        "style": "primary",
                        "action": {
                            "type": "postback",
                            "label": label,
                            "data": "do=settings",
                            "displayText": label,
                        },
                    }
                ],
            },
        },
    }
    return [_text("\n".join(lines)), button]


def on_postback(ward: Ward, choices: Choices, data: str) -> tuple[Choices, list[dict[str, Any]]]:
    """Apply a quick reply's postback; return the new choices and the replies."""
    fields = dict(parse_qsl(data))
    do, value = fields.get("do"), fields.get("v", "")
    _ = speaker(choices.language)
    if do == "area" and (value == "all" or value in ward.area_codes):
        choices = replace(choices, areas=() if value == "all" else (value,))
        area = _("すべての地域") if value == "all" else ward.area(value).label(choices.language)
        lead = _("地域を「{area}」にしました。").format(area=area) + "\n"
        return choices, [ask_topics(ward, choices, lead=lead)]
    if do == "topic" and (value == "all" or value in ward.topic_codes):
        if value == "all":
            topics: tuple[str, ...] = ()
            lead = _("すべての分野にしました。")
        else:
            name = ward.topic(value).label(choices.language)
            if value in choices.topics:
                topics = tuple(t for t in choices.topics if t != value)
                lead = _("{topic}を外しました。").format(topic=name)
            else:
                topics = tuple(t for t in ward.topic_codes if t in {*choices.topics, value})
                lead = _("{topic}を追加しました。").format(topic=name)
        choices = replace(choices, topics=topics)
        return choices, [ask_topics(ward, choices, lead=lead + "\n")]
    if do == "lang" and value in ward.language_codes:
        choices = replace(choices, language=value)
        if fields.get("then") == "area":  # signing up: the area next
            return choices, [ask_area(ward, choices)]
        return choices, done(ward, choices)
    if do == "done":
        return choices, done(ward, choices)
    if do == "settings":
        return choices, menu(ward, choices)
    if do == "menu" and value in ("area", "topic", "lang"):
        asks = {
            "area": lambda: ask_area(ward, choices),
            "topic": lambda: ask_topics(ward, choices),
            "lang": lambda: ask_language(ward),
        }
        return choices, [asks[value]()]
    return choices, help_text(ward, choices)


def on_text(ward: Ward, choices: Choices, text: str) -> list[dict[str, Any]]:
    """The answer to a text message: the settings for a settings word, else the help.
    A resident who has not chosen a language (still Japanese) and writes such a word in
    another language the ward offers is answered in that language."""
    word = text.strip().lower()
    said_in = SETTINGS_WORDS.get(word) or HELP_WORDS.get(word)
    if said_in and choices.language == SOURCE and said_in in ward.language_codes:
        choices = replace(choices, language=said_in)
    return menu(ward, choices) if word in SETTINGS_WORDS else help_text(ward, choices)


def on_other(ward: Ward, choices: Choices) -> list[dict[str, Any]]:
    """The answer to a sticker, a photo or anything else that is not text: the help."""
    return help_text(ward, choices)
