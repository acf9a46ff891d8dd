"""LINE message building: LINE's limits, counted as LINE counts them."""

from __future__ import annotations

from datetime import UTC, datetime

from channels.line import TEXT_LIMIT, LineChannel, fit_text, utf16_len
from notifier.config import Settings
from notifier.models import Announcement
from notifier.render import Templates
from tests.conftest import announcement
from tests.line_spec import errors


def notice(settings: Settings, **fields: object) -> Announcement:
    made = Announcement.model_validate(announcement(**fields), context={"ward": settings.ward})
    made.id, made.received_at = "n1", datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    return made


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_len("練馬") == 2
    assert utf16_len("🌸") == 2
    assert utf16_len("𠮷野家") == 4


def test_fit_text_keeps_the_tail_and_never_splits_a_surrogate_pair() -> None:
    tail = "\nhttps://www.city.nerima.tokyo.jp/"
    text = "🌸" * 3000  # 6000 UTF-16 units
    fitted = fit_text(text, 5000, tail)
    assert utf16_len(fitted) <= 5000
    assert fitted.endswith("…" + tail)
    assert "\ufffd" not in fitted and fitted.encode("utf-16-le").decode("utf-16-le") == fitted
    assert fit_text("短い", 5000, tail) == "短い"


def test_a_long_announcement_fits_lines_text_limit_with_its_link(settings: Settings) -> None:
    long = notice(settings, body="お知らせ" * 1250, url="https://www.city.nerima.tokyo.jp/a")
    content = LineChannel.compose(Templates(settings), long, "ja")
    (message,) = content["messages"]
    assert utf16_len(message["text"]) <= TEXT_LIMIT
    assert message["text"].endswith("https://www.city.nerima.tokyo.jp/a")
    assert errors({"to": ["U" + "0" * 32], **content}, "MulticastRequest") == []


def test_the_english_translation_is_used_for_english_readers(settings: Settings) -> None:
    translated = notice(settings, translations={"en": {"title": "Water outage", "body": "B"}})
    text = LineChannel.compose(Templates(settings), translated, "en")["messages"][0]["text"]
    assert "Water outage" in text and "Nerima City" in text
