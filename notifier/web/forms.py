"""The console's forms: what staff typed, turned into the API's JSON; errors in Japanese."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from multidict import MultiMapping

from notifier.config import CHANNELS, Settings

# one message a field, beside the field; the API's English messages stay in the API
IN_JAPANESE = {
    "title": "件名は改行や特殊な文字を含めず、1〜100文字で入力してください。",
    "body": (
        "本文は特殊な文字（制御文字や文字の向きを変える記号など）を含めず、"
        "1〜5,000文字で入力してください。"
    ),
    "topics": "分野を一つ以上選んでください。",
    "areas": "地域は一覧から選んでください（選ばなければ区内全域）。",
    "channels": "配信先を一つ以上選んでください。",
    "url": (
        "リンクは https:// で始まる1,000文字までのアドレスを入力してください"
        "（空白・引用符・< >・日本語などは、%で始まる形に変換したもの）。"
    ),
    "publish_at": "配信日時は、これから先の日時を入力してください。",
    "severity": "緊急度を選んでください。",
    "supersedes": "更新する警報が見つかりません。",
    "address": "住所を入力してください。",
    "name": "氏名を100文字以内で入力してください。",
    "language": "言語は一覧から選んでください。",
}
TRANSLATION = (
    "{lang}の件名と本文を両方入力してください"
    "（件名は改行を含めず100文字、本文は5,000文字まで。特殊な文字は使えません）。"
)


def japanese(fields: dict[str, str], settings: Settings) -> dict[str, str]:
    """The API's field errors as messages for staff, keyed by the form's field names."""
    names = {lang.code: lang.name for lang in settings.ward.languages}
    out: dict[str, str] = {}
    for field in fields:
        top, _, rest = field.partition(".")
        if top == "translations" and rest:
            lang = rest.partition(".")[0]
            out[f"translations.{lang}"] = TRANSLATION.format(lang=names.get(lang, lang))
        else:
            out[top] = IN_JAPANESE.get(top, "入力を確かめてください。")
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
        "channels": chosen(form, "channels") or list(CHANNELS),
    }
    if text(form, "url"):
        data["url"] = text(form, "url")
    when = text(form, "publish_at")
    if when:
        data["publish_at"] = local_time(when, settings)
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
    for name in ("url", "supersedes"):
        if text(form, name):
            data[name] = text(form, name)
    return data


def form_body(form: MultiMapping[Any]) -> str:
    """The body with the browser's CRLF line ends made LF, as the API's callers send it."""
    return text(form, "body").replace("\r\n", "\n")


def local_time(value: str, settings: Settings) -> str:
    """A datetime-local field (the ward's time) as RFC 3339 with its offset; left as it
    is when it does not parse, so that validation names the field."""
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return value
    if naive.tzinfo is not None:
        return naive.isoformat()
    return naive.replace(tzinfo=settings.tz).isoformat()
