"""The emergency flyer as a community board shows it, read back from its PDF: where each
word stands on the page (poppler's ``pdftotext -bbox``), its fonts (``pdffonts``) and the
text it gives back, in every language the ward offers."""

from __future__ import annotations

import html
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.print import PrintChannel
from notifier.config import Settings
from notifier.models import Alert
from notifier.pdf import render_fitted
from notifier.render import Templates
from tests.conftest import make_settings

MARGIN = 12 * 72 / 25.4  # the flyer's page margin, in points
ISSUED = datetime(2026, 12, 2, 6, 57, tzinfo=UTC)  # 15:57 in Tokyo
LONG = "\n\n".join(
    [
        "石神井川の水位が上がり、氾濫するおそれがあります。川の近くにお住まいの方は、"
        "直ちに近くの避難所へ避難してください。避難が難しい場合は、建物の2階以上など、"
        "少しでも高い場所へ移動してください。"
    ]
    * 12
)


@dataclass(frozen=True)
class Word:
    page: int  # from 0
    text: str
    x0: float
    y0: float  # from the top of the page, in points
    x1: float
    y1: float


@dataclass(frozen=True)
class Printed:
    path: Path
    size: tuple[float, float]  # each page's width and height, in points
    words: list[Word]

    @property
    def pages(self) -> int:
        return len({w.page for w in self.words})

    def text(self, page: int | None = None) -> str:
        """The words run together (a line break or a space between words is layout)."""
        return "".join(w.text for w in self.words if page is None or w.page == page)


PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', re.S)
WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>'
)


def read_back(path: Path) -> Printed:
    """Each word of a PDF with its box, as poppler finds them."""
    out = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    words, size = [], (0.0, 0.0)
    for n, (width, height, body) in enumerate(PAGE.findall(out)):
        size = (float(width), float(height))
        for x0, y0, x1, y1, text in WORD.findall(body):
            words.append(Word(n, html.unescape(text), *map(float, (x0, y0, x1, y1))))
    return Printed(path, size, words)


def fonts_of(path: Path) -> list[dict[str, str]]:
    """``pdffonts``' table: each font's name, type and whether it is embedded."""
    lines = subprocess.run(
        ["pdffonts", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    found = []
    for line in lines[2:]:  # a header and its rule
        name, *_, emb, sub, uni, _object, _generation = line.split()
        found.append({"name": name, "emb": emb, "sub": sub, "uni": uni})
    return found


@pytest.fixture
def templates(tmp_path: Path, prefix: str) -> Templates:
    return Templates(make_settings(tmp_path, prefix))


def alert(settings: Settings, **fields: Any) -> Alert:
    notice = Alert.model_validate(
        {
            "title": "避難指示",
            "body": "石神井川が氾濫するおそれがあります。\n\n直ちに避難所へ避難してください。",
            "severity": "emergency",
            "areas": ["shakujii"],
            **fields,
        },
        context={"ward": settings.ward},
    )
    notice.id, notice.received_at = "0123456789abcdef", ISSUED
    return notice


def flyer(templates: Templates, notice: Alert, tmp_path: Path, lang: str = "ja") -> Printed:
    """The flyer of the notice's first area, laid out as the print channel lays it out."""
    content = PrintChannel.compose(templates, notice, lang)["flyers"]
    path = tmp_path / f"flyer-{lang}.pdf"
    path.write_bytes(render_fitted(content[notice.areas[0]]))
    return read_back(path)


def inside(printed: Printed, margin: float) -> list[Word]:
    """The words not within ``margin`` of every edge of their page."""
    width, height = printed.size
    return [
        w
        for w in printed.words
        if w.x0 < margin - 1
        or w.y0 < margin - 1
        or w.x1 > width - margin + 1
        or w.y1 > height - margin + 1
    ]


def test_an_updates_flyer_says_its_marks_once_and_fills_the_page(
    templates: Templates, tmp_path: Path
) -> None:
    notice = alert(templates.settings, type="update", references="fedcba9876543210")
    printed = flyer(templates, notice, tmp_path)
    assert printed.pages == 1
    text = printed.text()
    assert text.count("【緊急】【更新】") == 1 and text.count("緊急") == 1, text
    assert "緊急情報" not in text
    assert text.count("避難指示") == 1
    heading = [w for w in printed.words if w.text in ("【緊急】【更新】", "避難指示")]
    assert heading and all(w.page == 0 for w in heading)
    assert inside(printed, MARGIN) == []  # every word within the printable area
    # the heading on top, in the largest type; the phone number and the time below it
    title = next(w for w in printed.words if w.text == "避難指示")
    assert title.y1 - title.y0 >= 40
    assert "発表：12月2日（水）午後3時57分" in text
    assert "03-3993-1111" in text and "練馬区役所" in text and "石神井" in text
    # the foot sits at the bottom of the page: no blank lower part
    lowest = max(w.y1 for w in printed.words)
    assert lowest > 0.85 * printed.size[1]


def test_an_all_clear_and_a_drill_say_what_they_are(templates: Templates, tmp_path: Path) -> None:
    cleared = alert(
        templates.settings,
        type="cancel",
        references="fedcba9876543210",
        title="避難指示を解除しました",
        body="石神井川の水位が下がりました。",
    )
    text = flyer(templates, cleared, tmp_path).text()
    assert text.count("【解除】") == 1 and "緊急" not in text
    drill = flyer(templates, alert(templates.settings, drill=True), tmp_path).text()
    assert drill.count("【訓練】【緊急】") == 1 and "これは訓練です。" in drill


def test_a_long_body_continues_in_smaller_type_and_nothing_leaves_the_page(
    templates: Templates, tmp_path: Path
) -> None:
    notice = alert(templates.settings, body=LONG, url="https://www.city.nerima.tokyo.jp/bousai/")
    printed = flyer(templates, notice, tmp_path)
    assert printed.pages >= 2
    assert inside(printed, MARGIN) == []
    text = printed.text()
    assert text.count("直ちに近くの避難所へ避難してください。") == 12  # every paragraph, whole
    assert "https://www.city.nerima.tokyo.jp/bousai/" in text
    assert min(w.y1 - w.y0 for w in printed.words) >= 20 - 0.01  # the body's type: 20 pt
    assert max(w.y1 for w in printed.words if w.page == 0) > 0.85 * printed.size[1]


def test_a_short_body_is_printed_larger_than_a_long_one(
    templates: Templates, tmp_path: Path
) -> None:
    short = flyer(templates, alert(templates.settings), tmp_path)
    long = flyer(templates, alert(templates.settings, body=LONG[:200]), tmp_path)

    def body_type(printed: Printed) -> float:
        line = next(w for w in printed.words if w.text.startswith("石神井川"))
        return line.y1 - line.y0

    assert short.pages == long.pages == 1
    assert body_type(short) > body_type(long) >= 20 - 0.01


TRANSLATED = {
    "en": ("Evacuation order", "Leave now for the nearest shelter."),
    "zh": ("避难指示", "这时请大家马上到附近的避难所。东门车站应说明们。"),
    "ko": ("피난 지시", "즉시 가까운 피난소로 대피하십시오."),
}


@pytest.mark.parametrize("lang", sorted(TRANSLATED))
def test_a_translated_flyer_prints_its_language_in_embedded_fonts(
    templates: Templates, tmp_path: Path, lang: str
) -> None:
    title, body = TRANSLATED[lang]
    notice = alert(templates.settings, translations={lang: {"title": title, "body": body}})
    printed = flyer(templates, notice, tmp_path, lang)
    text = printed.text()
    assert title.replace(" ", "") in text and body.replace(" ", "") in text
    assert inside(printed, MARGIN) == [] and printed.pages == 1
    fonts = fonts_of(printed.path)
    assert fonts and all(f["emb"] == "yes" and f["uni"] == "yes" for f in fonts), fonts
    names = " ".join(f["name"] for f in fonts)
    wanted = {"en": "BIZ-UDPGothic-Latin", "zh": "Droid-Sans-Fallback", "ko": "NanumBarunGothic"}
    assert wanted[lang] in names, names
    if lang != "en":  # Latin in the proportional face: the time, the phone number
        assert "BIZ-UDPGothic-Latin" in names, names
