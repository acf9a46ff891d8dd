"""Times as people read them: the ward's zone, each language's form, from one function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from notifier.when import local_time

TOKYO = ZoneInfo("Asia/Tokyo")
SUNDAY_9 = datetime(2026, 12, 20, 0, 0, tzinfo=UTC)  # 9:00 on Sunday in Tokyo


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("ja", "12月20日（日）午前9時00分"),
        ("easy", "12月20日（日）午前9時00分"),
        ("en", "Sun, Dec 20, 9:00 a.m."),
        ("zh", "12月20日（周日）9:00"),
        ("ko", "12월 20일(일) 오전 9:00"),
        ("fr", "12月20日（日）午前9時00分"),  # no form of its own: the ward's
    ],
)
def test_each_language_has_its_form_in_the_wards_zone(lang: str, expected: str) -> None:
    assert local_time(SUNDAY_9, TOKYO, lang) == expected


@pytest.mark.parametrize(
    ("hour", "ja", "en", "zh", "ko"),
    [
        (0, "午前0時05分", "12:05 a.m.", "0:05", "오전 0:05"),
        (11, "午前11時05分", "11:05 a.m.", "11:05", "오전 11:05"),
        (12, "午後0時05分", "12:05 p.m.", "12:05", "오후 12:05"),
        (15, "午後3時05分", "3:05 p.m.", "15:05", "오후 3:05"),
        (23, "午後11時05分", "11:05 p.m.", "23:05", "오후 11:05"),
    ],
)
def test_the_clock_round_the_day(hour: int, ja: str, en: str, zh: str, ko: str) -> None:
    value = datetime(2026, 12, 20, hour, 5, tzinfo=TOKYO)
    shown = {lang: local_time(value, TOKYO, lang, date=False) for lang in ("ja", "en", "zh", "ko")}
    assert shown == {"ja": ja, "en": en, "zh": zh, "ko": ko}


def test_the_date_alone_and_with_its_year() -> None:
    assert local_time(SUNDAY_9, TOKYO, "ja", clock=False, year=True) == "2026年12月20日（日）"
    assert local_time(SUNDAY_9, TOKYO, "en", clock=False, year=True) == "Sun, Dec 20, 2026"
    assert local_time(SUNDAY_9, TOKYO, "ko", clock=False, year=True) == "2026년 12월 20일(일)"
    assert local_time(SUNDAY_9, TOKYO, "zh", year=True) == "2026年12月20日（周日）9:00"


def test_the_day_is_the_wards_not_utcs() -> None:
    late_utc = datetime(2026, 12, 31, 20, 30, tzinfo=UTC)  # New Year's Day in Tokyo
    assert local_time(late_utc, TOKYO, "ja", year=True) == "2027年1月1日（金）午前5時30分"
    other = datetime(2027, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=9)))
    assert local_time(other, TOKYO, "en") == "Fri, Jan 1, 5:30 a.m."


def test_a_time_without_a_zone_or_without_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        local_time(datetime(2026, 12, 20, 9, 0), TOKYO)
    with pytest.raises(ValueError, match="date, the time"):
        local_time(SUNDAY_9, TOKYO, date=False, clock=False)
