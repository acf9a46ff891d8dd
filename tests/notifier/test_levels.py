"""警戒レベル: the level's name and colour come first on every channel, and an update or
all-clear carries how the levels went."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from channels.email import EmailChannel
from channels.line import LineChannel
from channels.print import PrintChannel
from channels.x import XChannel
from notifier import alerts
from notifier.config import Settings
from notifier.levels import LEVELS, severity_of
from notifier.models import Alert, Invalid, parse_notice
from notifier.render import Templates, level_history, prefix

TITLE = "石神井川の水位が上がっています"
BODY = "石神井川沿いの方は、直ちに近くの避難所へ避難してください。"


def alert(settings: Settings, **fields: Any) -> Alert:
    notice = parse_notice(
        {"kind": "alert", "title": TITLE, "body": BODY, **fields},
        {"ward": settings.ward, "now": None},
    )
    assert isinstance(notice, Alert)
    notice.id, notice.received_at = "a1", datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    return notice


@pytest.mark.parametrize(
    ("level", "severity"),
    [(5, "emergency"), (4, "emergency"), (3, "warning"), (2, "advisory"), (1, "advisory")],
)
def test_a_level_alone_stands_for_its_severity(
    settings: Settings, level: int, severity: str
) -> None:
    assert alert(settings, level=level).severity == severity == severity_of(level)
    assert alert(settings, level=level, severity="advisory").severity == "advisory"  # as given


def test_a_level_outside_one_to_five_or_neither_level_nor_severity_is_refused(
    settings: Settings,
) -> None:
    with pytest.raises(Invalid) as level:
        alerts.validate({"title": TITLE, "body": BODY, "level": 6}, settings)
    assert set(level.value.fields) == {"level"}
    with pytest.raises(Invalid) as neither:
        alerts.validate({"title": TITLE, "body": BODY}, settings)
    assert set(neither.value.fields) == {"severity"}
    with pytest.raises(Invalid) as assigned:
        alerts.validate({"title": TITLE, "body": BODY, "level": 3, "history": [2]}, settings)
    assert assigned.value.fields == {"history": "is assigned by the service"}


def test_every_channel_opens_with_the_level_and_its_name(settings: Settings) -> None:
    templates = Templates(settings)
    notice = alert(settings, level=4)
    line = LineChannel.compose(templates, notice, "ja")["messages"][0]
    header = line["contents"]["header"]
    assert line["altText"].startswith(f"【警戒レベル4】避難指示{TITLE}")
    assert header["backgroundColor"] == LEVELS[4].colour == "#AA00AA"
    assert header["contents"][0]["text"].startswith("【警戒レベル4】避難指示")
    texts = [c.get("text") for c in line["contents"]["body"]["contents"]]
    assert texts[:2] == [TITLE, "危険な場所から全員避難"]  # the level's action under the title
    mail = EmailChannel.compose(templates, notice, "ja")
    assert mail["subject"].startswith("【警戒レベル4】避難指示【練馬区】")
    assert "危険な場所から全員避難" in mail["text"] and "#AA00AA" in mail["html"]
    (post,) = XChannel.compose(templates, notice, "ja")["posts"]
    assert post.startswith(f"【警戒レベル4】避難指示{TITLE}") and "#警戒レベル4" in post
    flyer = PrintChannel.compose(templates, notice, "ja")
    assert "flyers" in flyer
    html = flyer["flyers"]["nerima"]
    assert "background: #AA00AA" in html and '<span class="level-name">避難指示</span>' in html


def test_the_yellow_and_white_levels_are_written_in_black(settings: Settings) -> None:
    templates = Templates(settings)
    for level in (2, 1):
        header = LineChannel.compose(templates, alert(settings, level=level), "ja")["messages"][0]
        text = header["contents"]["header"]["contents"][0]
        assert text["color"] == LEVELS[level].ink == "#000000"
        assert text["text"].endswith("練馬区 防災情報")  # the JMA's: information, not 緊急
    evacuation = LineChannel.compose(templates, alert(settings, level=3), "ja")["messages"][0]
    assert evacuation["contents"]["header"]["contents"][0]["text"].endswith("練馬区 緊急情報")


def test_in_other_languages_the_level_is_said_in_theirs(settings: Settings) -> None:
    notice = alert(settings, level=3, severity="warning")
    assert prefix(notice, "en") == "[Level 3] Evacuation of Older People and Others "
    assert prefix(notice, "easy").startswith("【けいかい レベル3】こうれいしゃとう ひなん")
    drill = alert(settings, level=5)
    drill.drill, drill.type, drill.references = True, "update", "a0"
    assert prefix(drill, "ja") == "【訓練】【警戒レベル5】緊急安全確保【更新】"


def test_an_update_and_the_all_clear_say_how_the_levels_went(settings: Settings) -> None:
    first = alert(settings, level=3)
    update = alert(settings, level=4, supersedes="a1")
    alerts.follow(first, update)
    assert update.history == [3]
    assert level_history(update, "ja") == "警戒レベル3 → 警戒レベル4"
    all_clear = alert(settings, severity="emergency", type="cancel", references="a2")
    alerts.follow(update, all_clear)
    assert all_clear.history == [3, 4] and all_clear.level is None
    assert level_history(all_clear, "ja") == "警戒レベル3 → 警戒レベル4 → 解除"
    assert level_history(all_clear, "en") == "Level 3 → Level 4 → ALL CLEAR"
    templates = Templates(settings)
    (post,) = XChannel.compose(templates, all_clear, "ja")["posts"]
    assert "警戒レベルの推移：警戒レベル3 → 警戒レベル4 → 解除" in post
    mail = EmailChannel.compose(templates, all_clear, "ja")["text"]
    assert "警戒レベルの推移：警戒レベル3 → 警戒レベル4 → 解除" in mail
    assert alert(settings, level=4).history == [] and level_history(first, "ja") is None


def test_an_update_that_names_no_level_keeps_the_one_it_follows(settings: Settings) -> None:
    first = alert(settings, level=4, hazard="flood")
    update = alert(settings, severity="emergency", supersedes="a1")
    alerts.follow(first, update)
    assert (update.level, update.hazard, update.history) == (4, "flood", [4])
    assert level_history(update, "ja") is None  # still level 4: nothing to show
