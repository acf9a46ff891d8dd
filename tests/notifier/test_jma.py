"""The JMA's telegrams, read from the JMA's own samples (tests/specs/jma, see SOURCE.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from notifier.jma import JmaError, Kind, parse

SPECS = Path(__file__).resolve().parent.parent / "specs" / "jma"
JST = timezone(timedelta(hours=9))


def sample(name: str) -> bytes:
    return (SPECS / name).read_bytes()


def test_an_h27_warning_telegram_names_each_citys_kinds() -> None:
    telegram = parse(sample("15_17_01_250123_VPWW54.xml"))
    assert telegram.title == "気象警報・注意報（Ｈ２７）"
    assert telegram.status == "通常"
    assert telegram.info_type == "発表"
    assert telegram.head_title == "島根県気象警報・注意報"
    assert telegram.report_time == datetime(2024, 11, 2, 13, 5, tzinfo=JST)
    assert (telegram.event_id, telegram.serial) == ("", "")
    [matsue] = telegram.items_for(["3220100"])
    assert matsue.type == "気象警報・注意報（市町村等）"
    assert matsue.area.name == "松江市"
    assert matsue.kinds == (
        Kind("大雨警報", "03", "継続", "浸水害"),
        Kind("雷注意報", "14", "継続"),
        Kind("強風注意報", "15", "継続"),
        Kind("波浪注意報", "16", "継続"),
    )


def test_an_r06_telegram_carries_the_level_in_the_kind() -> None:
    telegram = parse(sample("15_16_01_241031_VPWW56.xml"))
    assert telegram.title == "気象警報・注意報（Ｒ０６）（土砂）"
    [wakkanai] = telegram.items_for(["0121400"])
    assert [(k.name, k.status) for k in wakkanai.kinds] == [("レベル４土砂災害危険警報", "発表")]
    [sarufutsu] = telegram.items_for(["0151100"])
    assert [(k.name, k.status) for k in sarufutsu.kinds] == [("レベル３土砂災害警報", "継続")]
    assert telegram.items_for(["1312000"]) == []


def test_landslide_information_and_record_rain() -> None:
    landslide = parse(sample("17_03_01_190529_VXWW50.xml"))
    assert (landslide.family, landslide.event_id, landslide.serial) == (
        "landslide",
        "岡山県土砂災害警戒情報",
        "1",
    )
    [takahashi] = landslide.items_for(["3320900"])
    assert [(k.name, k.status) for k in takahashi.kinds] == [("警戒", "発表")]
    rain = parse(sample("18_03_01_190412_VPOA50.xml"))
    assert rain.family == "record_rain"
    assert [(i.area.name, i.kinds[0].status) for i in rain.items_for(["016010", "016020"])] == [
        ("石狩地方", "発表"),
        ("空知地方", "なし"),
    ]
    assert "札幌市中央区付近で約１００ミリ" in rain.headline


def test_earthquakes_give_the_intensity_of_the_configured_area() -> None:
    flash = parse(sample("32-35_01_01_100806_VXSE51.xml"))
    assert flash.family == "earthquake"
    assert flash.max_int == "6-"
    observed = flash.intensity_for(["350"])
    assert observed is not None
    assert (observed.area.name, observed.max_int) == ("東京都２３区", "4")
    assert flash.hypocentre is None
    assert flash.intensity_for(["999"]) is None
    full = parse(sample("32-35_01_03_240613_VXSE53.xml"))
    assert full.status == "訓練"
    assert full.hypocentre is not None
    assert (full.hypocentre.name, full.hypocentre.magnitude) == ("駿河湾", "5.9")
    assert full.comments[0] == "この地震による津波の心配はありません。"
    city = full.intensity_for(["1311100", "350"])  # a city the telegram names wins
    assert city is not None
    assert (city.area.name, city.max_int, city.city) == ("東京大田区", "3", True)


def test_a_cancellation_needs_no_intensity() -> None:
    cancel = parse(sample("32-35_06_06_100915_VXSE53.xml"))
    assert (cancel.info_type, cancel.event_id, cancel.serial) == ("取消", "20080614084350", "3")


HOSTILE = [
    (
        b'<?xml version="1.0"?><!DOCTYPE Report [<!ENTITY x "boom">]>'
        b'<Report xmlns="http://xml.kishou.go.jp/jmaxml1/">&x;</Report>',
        "Report",
        "no DTD or entities",
    ),
    (b"<Report", "Report", "not well-formed"),
    (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>', "Report", "<Report>"),
]


@pytest.mark.parametrize(("raw", "element", "words"), HOSTILE)
def test_hostile_or_foreign_xml_is_refused_by_name(raw: bytes, element: str, words: str) -> None:
    with pytest.raises(JmaError) as caught:
        parse(raw)
    assert caught.value.element == element
    assert words in caught.value.message


def test_an_oversize_telegram_is_refused_before_it_is_read() -> None:
    with pytest.raises(JmaError, match="larger than 1000 bytes"):
        parse(sample("15_16_01_241031_VPWW56.xml"), max_bytes=1000)


def test_a_missing_element_is_named() -> None:
    raw = sample("17_03_01_190529_VXWW50.xml").replace(
        b"<ReportDateTime>2013-09-02T15:37:00+09:00</ReportDateTime>", b""
    )
    with pytest.raises(JmaError) as caught:
        parse(raw)
    assert caught.value.element == "Report/Head/ReportDateTime"
    other = sample("17_03_01_190529_VXWW50.xml").replace(
        "<Title>土砂災害警戒情報</Title>".encode(),
        "<Title>府県天気予報</Title>".encode(),
        1,
    )
    with pytest.raises(JmaError, match="not a telegram the reader takes"):
        parse(other)
