"""The LINE conversation in each language the ward offers: every reply in the resident's
language, every message in every catalogue, quick replies LINE takes, 完了 in view."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from notifier import line_chat
from notifier.config import PROJECT_ROOT, Ward, load_settings
from notifier.i18n import KEYWORDS, SAID_IN, SOURCE, catalogue_path
from notifier.line_chat import QUICK_REPLY_MAX, Choices

KANA = re.compile(r"[\u3041-\u30ff]")
HAN = re.compile(r"[\u4e00-\u9fff]")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
PARENTHESES = re.compile(r"（[^）]*）")  # やさしい日本語 gives a name's kanji in them
LANGUAGES = ("ja", "easy", "en", "zh", "ko")


@pytest.fixture(scope="module")
def ward() -> Ward:
    return load_settings().ward


def said_in_code() -> set[str]:
    found: set[str] = set()
    for name, method in SAID_IN.items():
        for _, message, _, _ in extract_from_file(method, PROJECT_ROOT / name, KEYWORDS):
            found.add(message)
    return found


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != SOURCE])
def test_every_catalogue_has_every_message_and_no_other(lang: str) -> None:
    with catalogue_path(lang).open("rb") as f:
        catalogue = read_po(f)
    translated = {m.id: m.string for m in catalogue if m.id and not m.fuzzy}
    # a word the language writes as Japanese does (中文's 注意) says so in a comment
    alike = {m.id for m in catalogue if any("the same word" in c for c in m.user_comments)}
    said = said_in_code()
    assert len(said) > 20  # the extraction found the conversation's messages
    assert set(translated) == said
    fields = string.Formatter()
    for message, translation in translated.items():
        assert translation, message
        if (KANA.search(message) or HAN.search(message)) and message not in alike:
            assert translation != message, message  # Japanese words: translated
        named = {f for _, f, _, _ in fields.parse(message) if f}
        assert {f for _, f, _, _ in fields.parse(translation) if f} == named, message


def texts(replies: list[dict[str, Any]]) -> Iterator[str]:
    """What the resident reads in replies: texts, quick-reply labels and what tapping
    them says in the chat, a Flex bubble's texts and its button."""
    for message in replies:
        if message["type"] == "text":
            yield message["text"]
        for item in message.get("quickReply", {}).get("items", []):
            yield item["action"]["label"]
            yield item["action"]["displayText"]
        if message["type"] == "flex":
            yield message["altText"]
            for part in ("body", "footer"):
                for node in message["contents"][part]["contents"]:
                    yield node.get("text") or node["action"]["label"]


def assert_in(lang: str, replies: list[dict[str, Any]], ward: Ward) -> None:
    languages = sorted((x.name for x in ward.languages), key=len, reverse=True)
    for said in texts(replies):
        text = said
        for language in languages:  # a language is named in itself
            text = text.replace(language, "")
        if lang == "en":
            assert not (KANA.search(text) or HAN.search(text) or HANGUL.search(text)), text
        elif lang == "zh":
            assert not (KANA.search(text) or HANGUL.search(text)), text
        elif lang == "ko":
            assert HANGUL.search(text) and not KANA.search(text), text
        elif lang == "easy":
            assert not HAN.search(PARENTHESES.sub("", text).replace("✓", "")), text
        else:
            assert KANA.search(text) or HAN.search(text), text
            assert not HANGUL.search(text), text


def labels(reply: dict[str, Any]) -> list[str]:
    return [item["action"]["label"] for item in reply["quickReply"]["items"]]


def tap(reply: dict[str, Any], label: str) -> str:
    for item in reply["quickReply"]["items"]:
        if item["action"]["label"] == label:
            return str(item["action"]["data"])
    raise AssertionError(f"no quick reply {label!r} in {labels(reply)}")


def test_the_greeting_asks_for_the_language_in_every_language(ward: Ward) -> None:
    greeting, ask = line_chat.welcome(ward)
    text = greeting["text"] + "\n" + ask["text"]
    for expected in (
        "練馬区のお知らせ",
        "Nerima City",
        "练马区",
        "네리마구",
        "Choose your language",
    ):
        assert expected in text
    assert labels(ask) == [x.name for x in ward.languages]
    assert all(dict(parse_qsl(tap(ask, x.name)))["then"] == "area" for x in ward.languages)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_sign_up_in_three_taps_each_reply_in_the_residents_language(ward: Ward, lang: str) -> None:
    _, ask = line_chat.welcome(ward)
    name = next(x.name for x in ward.languages if x.code == lang)
    choices, (area_ask,) = line_chat.on_postback(ward, Choices(), tap(ask, name))
    assert choices.language == lang
    assert_in(lang, [area_ask], ward)
    assert labels(area_ask)[:4] == [a.label(lang) for a in ward.areas]

    oizumi = ward.area("oizumi").label(lang)
    choices, (topic_ask,) = line_chat.on_postback(ward, choices, tap(area_ask, oizumi))
    assert choices.areas == ("oizumi",)
    assert oizumi in topic_ask["text"]
    assert_in(lang, [topic_ask], ward)
    items = topic_ask["quickReply"]["items"]
    assert len(items) <= QUICK_REPLY_MAX
    assert dict(parse_qsl(items[0]["action"]["data"])) == {"do": "done"}  # first: in view

    disaster = ward.topic("disaster").label(lang)
    choices, (added,) = line_chat.on_postback(ward, choices, tap(topic_ask, disaster))
    assert choices.topics == ("disaster",)
    assert_in(lang, [added], ward)
    ticked = next(i for i in added["quickReply"]["items"] if "v=disaster" in i["action"]["data"])
    assert ticked["action"]["label"] == ("✓" + disaster)[:20]
    assert ticked["action"]["displayText"] != ticked["action"]["label"]  # says: remove it
    choices, (removed,) = line_chat.on_postback(ward, choices, ticked["action"]["data"])
    assert choices.topics == ()
    assert removed["text"] != added["text"]

    choices, saved = line_chat.on_postback(ward, choices, items[0]["action"]["data"])
    assert_in(lang, saved, ward)
    text, button = saved
    assert ward.area("oizumi").label(lang) in text["text"]
    action = button["contents"]["footer"]["contents"][0]["action"]
    assert dict(parse_qsl(action["data"])) == {"do": "settings"}
    _, (menu,) = line_chat.on_postback(ward, choices, action["data"])
    assert_in(lang, [menu], ward)
    assert len(labels(menu)) == 3


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_sticker_and_any_text_get_an_answer_in_the_residents_language(
    ward: Ward, lang: str
) -> None:
    choices = Choices(language=lang)
    for replies in (
        line_chat.on_other(ward, choices),
        line_chat.on_text(ward, choices, "こんにちは"),
        line_chat.on_text(ward, choices, "hello"),
    ):
        assert_in(lang, replies, ward)
        assert ward.phone in replies[0]["text"]
        assert dict(parse_qsl(replies[0]["quickReply"]["items"][0]["action"]["data"])) == {
            "do": "settings"
        }


@pytest.mark.parametrize(
    ("word", "lang"), [("help", "en"), ("Settings", "en"), ("设置", "zh"), ("설정", "ko")]
)
def test_a_word_in_another_language_is_answered_in_it(ward: Ward, word: str, lang: str) -> None:
    """A resident who never chose a language (still Japanese) and writes in another."""
    replies = line_chat.on_text(ward, Choices(), word)
    assert_in(lang, replies, ward)
    chosen = line_chat.on_text(ward, Choices(language="easy"), word)  # a choice stands
    assert_in("easy", chosen, ward)


def test_settings_words_open_the_settings(ward: Ward) -> None:
    for word in ("設定", "せってい", "settings", " MENU ", "设置", "설정"):
        (reply,) = line_chat.on_text(ward, Choices(areas=("oizumi",)), word)
        assert dict(parse_qsl(reply["quickReply"]["items"][0]["action"]["data"]))["do"] == "menu"


def test_every_template_that_says_a_message_is_read_for_the_catalogues() -> None:
    """A template that calls _ but is missing from SAID_IN would escape the check above."""
    calling = re.compile(r"\b_\(")
    templates = PROJECT_ROOT / "templates"
    saying = {
        str(path.relative_to(PROJECT_ROOT))
        for path in templates.rglob("*")
        if path.is_file()
        and path.suffix in {".html", ".txt", ".json"}
        and calling.search(path.read_text(encoding="utf-8"))
    }
    assert len(saying) > 10
    assert saying <= set(SAID_IN)
