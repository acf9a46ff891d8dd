"""The console's forms: what staff typed, turned into the API's JSON; errors in Japanese."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from multidict import MultiMapping

from notifier import channel_registry
from notifier.config import Settings

# one message a field, beside the field, naming it as the form's label does ({}); the
# API's English messages stay in the API
IN_JAPANESE = {
    "title": "{}は改行や特殊な文字を含めず、1〜100文字で入力してください。",
    "body": (
        "{}は特殊な文字（制御文字や文字の向きを変える記号など）を含めず、"
        "1〜5,000文字で入力してください。"
    ),
    "topics": "{}を一つ以上選んでください。",
    "areas": "{}は一覧から選んでください（選ばなければ区内全域）。",
    "channels": "{}を一つ以上選んでください。",
    "url": (
        "{}は https:// で始まる1,000文字までのアドレスを入力してください"
        "（空白・引用符・< >・日本語などは、%で始まる形に変換したもの）。"
    ),
    "publish_at": "{}は、これから先の日時を入力してください。",
    "severity": "{}を選んでください。",
    "supersedes": "更新する警報が見つかりません。",
    "address": "{}を入力してください。",
    "name": "{}を100文字以内で入力してください。",
    "language": "{}は一覧から選んでください。",
}
# what each form's labels call its fields (templates/console/*.html)
COMPOSE = {
    "title": "件名",
    "body": "本文",
    "topics": "分野",
    "areas": "地域",
    "channels": "配信先",
    "url": "リンク",
    "publish_at": "配信日時",
}
DESK = {
    "title": "見出し",
    "body": "「何が起きたか・何をすべきか・どこへ行くか」",
    "severity": "緊急度",
    "level": "警戒レベル",
    "hazard": "災害の種類",
    "areas": "地域",
    "url": "リンク",
}
PRINT = {"name": "氏名", "address": "住所", "areas": "地域"}
TRANSLATION = (
    "{lang}の件名と本文を両方入力してください"
    "（件名は改行を含めず100文字、本文は5,000文字まで。特殊な文字は使えません）。"
)
UNNAMED = "入力を確かめてください。"


def japanese(fields: dict[str, str], settings: Settings, labels: dict[str, str]) -> dict[str, str]:
    """The API's field errors as messages for staff, keyed by the form's field names and
    naming each field by its ``labels`` (COMPOSE, DESK, PRINT)."""
    names = {lang.code: lang.name for lang in settings.ward.languages}
    out: dict[str, str] = {}
    for field in fields:
        top, _, rest = field.partition(".")
        if top == "translations" and rest:
            lang = rest.partition(".")[0]
            out[f"translations.{lang}"] = TRANSLATION.format(lang=names.get(lang, lang))
        else:
            message = IN_JAPANESE.get(top, UNNAMED)
            named = top in labels or "{}" not in message  # else the form has no such field
            out[top] = message.format(labels.get(top, "")) if named else UNNAMED
    return out


def text(form: MultiMapping[Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def chosen(form: MultiMapping[Any], name: str) -> list[str]:
    return [v for v in form.getall(name, []) if isinstance(v, str)]


def announcement(form: MultiMapping[Any], settings: Settings) -> dict[str, Any]:
    """The announcement's JSON as the API takes it (empty fields left out)."""
    data: dict[str, Any] = {
        "title": text(form, "title"),
        "body": form_body(form),
        "topics": chosen(form, "topics"),
        "areas": chosen(form, "areas"),
        "channels": chosen(form, "channels") or list(channel_registry.names()),
    }
    if text(form, "url"):
        data["url"] = text(form, "url")
    when = text(form, "publish_at")
    if when:
        data["publish_at"] = rfc3339(when, settings)
    translations = {}
    for lang in settings.ward.language_codes:
        title = text(form, f"title_{lang}")
        body = text(form, f"body_{lang}").replace("\r\n", "\n")
        if lang != "ja" and (title or body):
            translations[lang] = {"title": title, "body": body}
    if translations:
        data["translations"] = translations
    return data


def alert(form: MultiMapping[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": text(form, "title"),
        "body": form_body(form),
        "severity": text(form, "severity"),
        "areas": chosen(form, "areas"),
    }
    for name in ("url", "supersedes", "hazard"):
        if text(form, name):
            data[name] = text(form, name)
    level = text(form, "level")
    if level:  # the level decides the severity, as in the API
        data["level"] = int(level) if level.isdigit() else level
        data.pop("severity")
    return data


def form_body(form: MultiMapping[Any]) -> str:
    """The body with the browser's CRLF line ends made LF, as the API's callers send it."""
    return text(form, "body").replace("\r\n", "\n")


def rfc3339(value: str, settings: Settings) -> str:
    """A datetime-local field (the ward's time) as RFC 3339 with its offset; left as it
    is when it does not parse, so that validation names the field."""
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return value
    if naive.tzinfo is not None:
        return naive.isoformat()
    return naive.replace(tzinfo=settings.tz).isoformat()
