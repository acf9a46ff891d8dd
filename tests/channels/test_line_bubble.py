"""The LINE bubble a resident reads: in their language, with the time in their form,
the area readable, and on an alert the buttons to act on it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.line import LineChannel
from notifier.config import Settings
from notifier.models import Alert, Announcement
from notifier.render import Templates
from tests.conftest import announcement
from tests.line_spec import errors

ISSUED = datetime(2026, 12, 2, 6, 44, tzinfo=UTC)  # 午後3時44分 in Tokyo
TRANSLATED = {
    lang: {"title": f"title in {lang}", "body": f"body in {lang}"}
    for lang in ("en", "easy", "zh", "ko")
}


def alert(settings: Settings, **fields: Any) -> Alert:
    made = Alert.model_validate(
        {
            "title": "避難指示",
            "body": "石神井川が氾濫するおそれがあります。",
            "severity": "emergency",
            "areas": ["shakujii"],
            "translations": TRANSLATED,
            **fields,
        },
        context={"ward": settings.ward},
    )
    made.id, made.received_at = "a1", ISSUED
    return made


def bubble(settings: Settings, notice: Alert | Announcement, lang: str) -> dict[str, Any]:
    (message,) = LineChannel.compose(Templates(settings), notice, lang)["messages"]
    assert errors(message, "Message") == []  # as LINE's document takes it
    contents: dict[str, Any] = message["contents"]
    return contents


def footer_lines(contents: dict[str, Any]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = contents["body"]["contents"][3]["contents"]
    return lines


def buttons(contents: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (b["action"]["label"], b["action"]["uri"])
        for b in contents.get("footer", {}).get("contents", [])
    ]


@pytest.mark.parametrize(
    ("lang", "header", "area", "issued", "call"),
    [
        (
            "ja",
            "練馬区 緊急情報",
            "対象地域：石神井",
            "12月2日（水）午後3時44分発表",
            "区役所に電話する",
        ),
        (
            "easy",
            "ねりまく（練馬区） きんきゅう じょうほう",
            "ちいき：しゃくじい（石神井）",
            "12月2日（水）午後3時44分に だしました",
            "くやくしょに でんわする",
        ),
        (
            "en",
            "Nerima City emergency information",
            "Area: Shakujii",
            "Issued Wed, Dec 2, 3:44 p.m.",
            "Call the city office",
        ),
        ("zh", "练马区 紧急信息", "对象地区：石神井", "12月2日（周三）15:44发布", "致电区政府"),
        (
            "ko",
            "네리마구 긴급 정보",
            "대상 지역: 샤쿠지이",
            "12월 2일(수) 오후 3:44 발표",
            "구청에 전화하기",
        ),
    ],
)
def test_an_alert_speaks_the_readers_language_and_can_be_acted_on(
    settings: Settings, lang: str, header: str, area: str, issued: str, call: str
) -> None:
    contents = bubble(settings, alert(settings), lang)
    assert contents["header"]["contents"][0]["text"].endswith(header)
    lines = footer_lines(contents)
    assert [line["text"] for line in lines] == [area, issued]
    assert {line["size"] for line in lines} == {"sm"}  # not xs: read by older eyes too
    assert buttons(contents) == [(call, "tel:0339931111")]


def test_the_hazard_map_and_the_link_are_buttons_too_but_an_all_clear_calls_no_one(
    settings: Settings,
) -> None:
    mapped = settings.model_copy(
        update={
            "ward": settings.ward.model_copy(
                update={"hazard_map_url": "https://www.city.nerima.tokyo.jp/bosai/"}
            )
        }
    )
    link = "https://www.city.nerima.tokyo.jp/a"
    assert buttons(bubble(mapped, alert(mapped, url=link), "en")) == [
        ("More", link),
        ("Call the city office", "tel:0339931111"),
        ("Shelters and hazard map", "https://www.city.nerima.tokyo.jp/bosai/"),
    ]
    cancel = alert(mapped, type="cancel", url=link, references=f"{uuid.UUID(int=1)}")
    assert buttons(bubble(mapped, cancel, "ja")) == [("詳しく見る", link)]


def test_an_announcement_shows_its_areas_topics_and_date(settings: Settings) -> None:
    notice = Announcement.model_validate(
        announcement(areas=["nerima", "oizumi"], topics=["garbage"], translations=TRANSLATED),
        context={"ward": settings.ward},
    )
    notice.id, notice.received_at = "n1", ISSUED
    ja = [line["text"] for line in footer_lines(bubble(settings, notice, "ja"))]
    assert ja == ["対象地域：練馬・大泉", "分野：ごみ・リサイクル", "12月2日（水）午後3時44分発表"]
    en = [line["text"] for line in footer_lines(bubble(settings, notice, "en"))]
    assert en == [
        "Area: Nerima, Oizumi",
        "Topics: Garbage and recycling",
        "Issued Wed, Dec 2, 3:44 p.m.",
    ]
    assert buttons(bubble(settings, notice, "ko")) == []  # no link, and not an alert


def test_a_hazard_map_that_is_not_https_is_refused(settings: Settings) -> None:
    ward = settings.ward.model_dump()
    ward["hazard_map_url"] = "http://example.jp/map"
    with pytest.raises(ValueError, match="https://"):
        type(settings.ward).model_validate(ward)


@pytest.mark.parametrize(
    ("lang", "marks"),
    [
        ("ja", "【訓練】【緊急】【更新】"),
        ("easy", "【くんれん】【きんきゅう】【こうしん】"),
        ("en", "[DRILL][EMERGENCY][UPDATE] "),
        ("zh", "【演练】【紧急】【更新】"),
        ("ko", "[훈련][긴급][갱신] "),
    ],
)
def test_an_alerts_marks_are_in_the_readers_language(
    settings: Settings, lang: str, marks: str
) -> None:
    drill = alert(settings, drill=True, type="update", references=f"{uuid.UUID(int=1)}")
    header = bubble(settings, drill, lang)["header"]["contents"][0]["text"]
    assert header.startswith(marks)
