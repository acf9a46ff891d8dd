"""Furigana over the kanji of printed headings (NOTIFIER_PRINT_FURIGANA): the ward's place
names and a notice's own readings, laid out above their words in the PDF."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.print import PrintChannel
from notifier import alerts, intake
from notifier.models import Invalid
from notifier.pdf import PdfMaker
from notifier.render import Templates, furigana
from tests.conftest import announcement, make_settings
from tests.notifier.test_digest import smallest_type, text_of


def test_readings_go_over_their_words_longest_first_and_the_rest_is_escaped() -> None:
    html = furigana(
        "練馬区<練馬>の石神井", {"練馬": "ねりま", "練馬区": "ねりまく", "石神井": "しゃくじい"}
    )
    assert html.count('class="ruby"') == 3
    assert '<span class="rt">ねりまく</span><span class="rb">練馬区</span></span>&lt;' in html
    assert "&lt;" in html and "<練馬>" not in html
    assert furigana("<b>", {}) == "&lt;b&gt;"


def test_a_notice_takes_only_kana_readings_of_words_with_kanji(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "test:furigana:")
    for bad in (
        {"公園": "kouen"},
        {"こうえん": "こうえん"},
        {"公園": ""},
        {f"語{i}": "ご" for i in range(51)},
    ):
        with pytest.raises(Invalid) as found:
            intake.validate(announcement(readings=bad), settings)
        assert "readings" in found.value.fields
    ok = intake.validate(announcement(readings={"公園": "こうえん"}), settings)
    assert ok.readings == {"公園": "こうえん"}
    with pytest.raises(ValidationError):
        make_settings(
            tmp_path,
            "test:furigana:",
            ward={**settings.ward.model_dump(), "readings": {"x": "えっくす"}},
        )


async def test_printed_headings_carry_the_readings_when_turned_on(tmp_path: Path) -> None:
    alert = alerts.validate(
        {
            "title": "石神井川の避難指示",
            "body": "直ちに避難してください。",
            "severity": "emergency",
            "areas": ["shakujii"],
            "channels": ["print"],
        },
        make_settings(tmp_path, "test:furigana:"),
    )
    alert.id, alert.received_at = "0123456789abcdef", datetime.now(UTC)
    notice = intake.validate(
        announcement(title="石神井公園の清掃", readings={"公園": "こうえん", "清掃": "せいそう"}),
        make_settings(tmp_path, "test:furigana:"),
    )
    pdf = PdfMaker(1)
    try:
        for on in (True, False):
            settings = make_settings(tmp_path, "test:furigana:", print_furigana=on)
            templates = Templates(settings)
            flyer = PrintChannel.compose(templates, alert, "ja")["flyers"]["shakujii"]
            path = tmp_path / f"flyer-{on}.pdf"
            path.write_bytes(await pdf.make(flyer))
            text = text_of(path)
            assert ("しゃくじい" in text and "ひなん" in text) == on  # the ward's place names
            assert smallest_type(path) >= 20 - 0.01
            entry = PrintChannel.compose(templates, notice, "ja")["html"]
            assert ('<span class="rt">こうえん</span>' in entry) == on  # the notice's own
            assert ("しゃくじい" in entry) == on
    finally:
        pdf.close()
