"""Jinja2 rendering, once per (notice, channel, language). Pure: text in, text out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context as JinjaContext
from markupsafe import Markup, escape

from notifier.config import PROJECT_ROOT, Settings
from notifier.i18n import HTML_LANG, N_, joined, speaker
from notifier.levels import LEVELS
from notifier.models import Alert, AnyNotice
from notifier.when import local_time

TEMPLATES_DIR = PROJECT_ROOT / "templates"
# an alert's marks, in Japanese; each language's own words come from its catalogue
MARKS = {
    "advisory": N_("注意"),
    "warning": N_("警戒"),
    "emergency": N_("緊急"),
    "update": N_("更新"),
    "cancel": N_("解除"),
    "drill": N_("訓練"),
}
SQUARE = ("en", "ko")  # languages whose marks go in [ ], not 【 】
SEVERITY_COLOURS = {"advisory": "#7a5c00", "warning": "#b34700", "emergency": "#b00020"}
ALL_CLEAR_COLOUR = "#1e6b32"


LEVEL_LABEL = N_("警戒レベル{number}")


def level_label(number: int, lang: str) -> str:
    """警戒レベル4, Level 4 …: the level as its mark says it."""
    return speaker(lang)(LEVEL_LABEL).format(number=number)


def alert_marks(notice: AnyNotice, lang: str) -> list[str]:
    """What an alert says before its title: drill, then its 警戒レベル or else its
    severity (and update), or the all-clear — ['訓練', '警戒レベル4', '更新']. Nothing for
    an announcement."""
    if not isinstance(notice, Alert):
        return []
    say = speaker(lang)
    marks = [say(MARKS["drill"])] if notice.drill else []
    if notice.type == "cancel":
        return [*marks, say(MARKS["cancel"])]
    if notice.level:
        marks.append(level_label(notice.level, lang))
    else:
        marks.append(say(MARKS[notice.severity]))
    return [*marks, say(MARKS["update"])] if notice.type == "update" else marks


def prefix(notice: AnyNotice, lang: str) -> str:
    """The marks as every channel writes them before the title: 【訓練】【緊急】【更新】, and
    for a 警戒レベル the level's standard name after its mark: 【警戒レベル4】避難指示."""
    marks = alert_marks(notice, lang)
    if not isinstance(notice, Alert) or not notice.level or notice.type == "cancel":
        return bracketed(marks, lang)
    at = marks.index(level_label(notice.level, lang)) + 1
    name = speaker(lang)(LEVELS[notice.level].name)
    gap = " " if lang in SQUARE else ""
    return bracketed(marks[:at], lang).rstrip() + gap + name + gap + bracketed(marks[at:], lang)


def level_history(notice: AnyNotice, lang: str) -> str | None:
    """How the levels went, for an update or all-clear that follows one with a level:
    警戒レベル3 → 警戒レベル4 → 解除."""
    if not isinstance(notice, Alert) or not notice.history:
        return None
    steps = [level_label(n, lang) for n in notice.history]
    if notice.type == "cancel":
        steps.append(speaker(lang)(MARKS["cancel"]))
    elif notice.level:
        steps.append(level_label(notice.level, lang))
    steps = [s for i, s in enumerate(steps) if i == 0 or s != steps[i - 1]]
    return " → ".join(steps) if len(steps) > 1 else None


def bracketed(marks: list[str], lang: str) -> str:
    """['緊急', '更新'] → 【緊急】【更新】 (in English: [EMERGENCY][UPDATE] , in Korean
    [긴급][갱신] )."""
    if not marks:
        return ""
    if lang in SQUARE:
        return "".join(f"[{m}]" for m in marks) + " "
    return "".join(f"【{m}】" for m in marks)


def furigana(text: str, readings: dict[str, str]) -> Markup:
    """``text`` escaped, each word of ``readings`` with its reading above it: an inline
    block holding the reading and the word (WeasyPrint does not lay out <ruby>)."""
    if not readings:
        return escape(text)
    words = sorted(readings, key=len, reverse=True)  # 練馬区 before 練馬
    pattern = re.compile("|".join(re.escape(w) for w in words))
    out, last = [], 0
    for found in pattern.finditer(text):
        out.append(escape(text[last : found.start()]))
        word = found.group()
        out.append(
            Markup(
                '<span class="ruby"><span class="rt">{}</span><span class="rb">{}</span></span>'
            ).format(readings[word], word)
        )
        last = found.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def paragraphs(text: str) -> Markup:
    """``{{ body | paragraphs }}``: a paragraph for each blank-line-separated part, its own
    line breaks kept (as the desk wrote them: 避難所：… on a line of its own)."""
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>").join(escape(line) for line in part.split("\n")))
        for part in text.split("\n\n")
    )


@pass_context
def _listed(context: JinjaContext, names: list[str]) -> str:
    """``{{ areas | listed }}``: names one after another, as the reader's language lists them."""
    return joined(names, context.get("lang", "ja"))


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
        self.env.filters["when"] = self._when
        self.env.filters["listed"] = _listed
        self.env.filters["paragraphs"] = paragraphs
        self.env.filters["furigana"] = furigana

    @pass_context
    def _when(self, context: JinjaContext, value: datetime, **parts: bool) -> str:
        """``{{ published | when }}``: the time as the template's reader (its ``lang``)
        reads it, in the ward's time zone (``notifier.when.local_time``)."""
        return local_time(value, self.settings.tz, context.get("lang", "ja"), **parts)

    def load(self, *folders: str) -> None:
        """Compile the templates under ``folders`` now: the first notice would otherwise
        wait for it."""
        for name in self.env.list_templates(filter_func=lambda n: n.split("/")[0] in folders):
            self.env.get_template(name)

    def context(self, notice: AnyNotice, lang: str) -> dict[str, Any]:
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
            "ward_name": ward.label(lang),
            "ward_tel": ward.tel,
            "_": speaker(lang),
            "html_lang": HTML_LANG.get(lang, lang),
            "published": local,
            "public_url": self.settings.public_url,
            "alert": self._alert(notice, lang),
            "readings": {**ward.readings, **notice.readings}
            if self.settings.print_furigana and lang == "ja"
            else {},
        }

    def _alert(self, notice: AnyNotice, lang: str) -> dict[str, Any] | None:
        if not isinstance(notice, Alert):
            return None
        say = speaker(lang)
        level = LEVELS[notice.level] if notice.level and notice.type != "cancel" else None
        colour = SEVERITY_COLOURS[notice.severity]
        return {
            "severity": notice.severity,
            "type": notice.type,
            "drill": notice.drill,
            "marks": alert_marks(notice, lang),
            "prefix": prefix(notice, lang),
            "severity_label": say(MARKS[notice.severity]),
            "level": {
                "number": level.number,
                "label": level_label(level.number, lang),
                "name": say(level.name),
                "action": say(level.action),
                "colour": level.colour,
                "ink": level.ink,
                "evacuation": level.issued_by_ward,  # 3–5; 1–2 go out as information
            }
            if level
            else None,
            "history": level_history(notice, lang),
            "shelters": [] if notice.type == "cancel" else notice.shelters,
            "shelters_url": f"{self.settings.public_url}/shelters",
            "colour": ALL_CLEAR_COLOUR
            if notice.type == "cancel"
            else level.colour
            if level
            else colour,
            "ink": level.ink if level else "#ffffff",
        }

    def page(self, name: str, **values: Any) -> str:
        """A template that is not about a notice (web pages, confirmation mail)."""
        ward = self.settings.ward
        return self.env.get_template(name).render(
            ward=ward, public_url=self.settings.public_url, **values
        )

    def render(self, name: str, notice: AnyNotice, lang: str, **extra: Any) -> str:
        return self.env.get_template(name).render(self.context(notice, lang), **extra).strip()
