"""Jinja2 rendering, once per (notice, channel, language). Pure: text in, text out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from notifier.config import PROJECT_ROOT, Settings
from notifier.models import Announcement

TEMPLATES_DIR = PROJECT_ROOT / "templates"
WEEKDAYS_JA = "月火水木金土日"


def japanese_date(value: datetime) -> str:
    """2026年11月26日（木）9時00分 — the form the ward writes dates in."""
    return (
        f"{value.year}年{value.month}月{value.day}日（{WEEKDAYS_JA[value.weekday()]}）"
        f"{value.hour}時{value.minute:02d}分"
    )


class Templates:
    """The Jinja2 environment, made once at start-up.

    HTML templates (``*.html``) are autoescaped; text templates (``*.txt``) are not.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.env.filters["japanese_date"] = japanese_date

    def context(self, notice: Announcement, lang: str) -> dict[str, Any]:
        ward = self.settings.ward
        local = notice.effective_at.astimezone(self.settings.tz)
        return {
            "lang": lang,
            "kind": notice.kind,
            "id": notice.id,
            "title": notice.title_in(lang),
            "body": notice.body_in(lang),
            "url": notice.url,
            "topics": [ward.topic(code).label(lang) for code in notice.topics],
            "areas": [ward.area(code).label(lang) for code in notice.areas],
            "whole_ward": not notice.areas,
            "ward": ward,
            "ward_name": ward.name_en if lang == "en" else ward.name,
            "published": local,
            "public_url": self.settings.public_url,
        }

    def page(self, name: str, **values: Any) -> str:
        """A template that is not about a notice (web pages, confirmation mail)."""
        ward = self.settings.ward
        return self.env.get_template(name).render(
            ward=ward, public_url=self.settings.public_url, **values
        )

    def render(self, name: str, notice: Announcement, lang: str, **extra: Any) -> str:
        return self.env.get_template(name).render(self.context(notice, lang), **extra).strip()
