"""How a time reads to a person: in the ward's time zone, in the reader's language.

Every time a resident or a member of staff reads (the console, LINE, email, X, the flyer
and the digest) is written by ``local_time``: 12月20日（日）午前9時00分 in Japanese (and in
やさしい日本語), Sun, Dec 20, 9:00 a.m. in English, 12月20日（周日）9:00 in Chinese,
12월 20일(일) 오전 9:00 in Korean. Machines get ISO 8601 (the API, logs), never this.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

WEEKDAYS = {
    "ja": ("月", "火", "水", "木", "金", "土", "日"),
    "zh": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    "ko": ("월", "화", "수", "목", "금", "토", "일"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
JAPANESE = ("ja", "easy")  # やさしい日本語 writes times as Japanese does


def local_time(
    value: datetime,
    tz: tzinfo,
    lang: str = "ja",
    *,
    date: bool = True,
    clock: bool = True,
    year: bool = False,
) -> str:
    """``value`` in the ward's time zone ``tz``, as a reader of ``lang`` writes it: the
    date with its weekday (``year`` adds the year), then the time: on a 12-hour clock
    with 午前/午後 (a.m./p.m., 오전/오후), on a 24-hour one in Chinese; ``date`` or
    ``clock`` False leaves that part out. Midnight is 午前0時00分 (12:00 a.m.), noon
    午後0時00分 (12:00 p.m.).
    A language the ward has no form for reads as Japanese."""
    if value.tzinfo is None:
        raise ValueError("a time without a time zone cannot be shown to a person")
    if not (date or clock):
        raise ValueError("show the date, the time or both")
    at = value.astimezone(tz)
    form = lang if lang in WEEKDAYS else "ja"
    half = at.hour % 12
    morning = at.hour < 12
    parts: list[str] = []
    if form == "en":
        if date:
            day = f"{WEEKDAYS['en'][at.weekday()]}, {MONTHS_EN[at.month - 1]} {at.day}"
            parts.append(f"{day}, {at.year}" if year else day)
        if clock:
            parts.append(f"{half or 12}:{at.minute:02d} {'a.m.' if morning else 'p.m.'}")
        return ", ".join(parts)
    weekday = WEEKDAYS[form][at.weekday()]
    if form == "ko":
        if date:
            day = f"{at.month}월 {at.day}일({weekday})"
            parts.append(f"{at.year}년 {day}" if year else day)
        if clock:
            hour = half if morning else half or 12  # 오전 0:00 at midnight, 오후 12:00 at noon
            parts.append(f"{'오전' if morning else '오후'} {hour}:{at.minute:02d}")
        return " ".join(parts)
    text = ""
    if date:
        text = f"{at.year}年" if year else ""
        text += f"{at.month}月{at.day}日（{weekday}）"
    if clock:
        if form == "zh":  # a 24-hour clock, as notices in Chinese write it
            text += f"{at.hour}:{at.minute:02d}"
        else:
            text += f"{'午前' if morning else '午後'}{half}時{at.minute:02d}分"
    return text
