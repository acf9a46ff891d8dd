"""JMA telegrams → draft alerts in the ward's wording, kept once each in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from notifier.config import Settings
from notifier.jma import parse
from notifier.jma_drafts import DraftStore, draft_for, level_of
from notifier.keys import Keys
from notifier.models import parse_notice
from tests.conftest import REDIS_URL, make_settings

SPECS = Path(__file__).resolve().parent.parent / "specs" / "jma"


def telegram(name: str, **replace: str) -> Any:
    raw = (SPECS / name).read_bytes()
    for old, new in replace.items():
        raw = raw.replace(old.encode(), new.encode())
    return parse(raw)


def configured(tmp_path: Path, prefix: str, *areas: str, **more: Any) -> Settings:
    return make_settings(tmp_path, prefix, jma_areas=list(areas), **more)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.aclose()


def valid(alert: dict[str, Any], settings: Settings) -> Any:
    """The draft's alert is one the API would take."""
    return parse_notice(dict(alert), {"ward": settings.ward, "now": None})


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        ("レベル４土砂災害危険警報", 4),
        ("レベル２大雨注意報", 2),
        ("レベル５大雨特別警報", 5),
        ("大雨注意報", 2),
        ("大雨警報", 3),
        ("洪水警報", 3),
        ("土砂災害警戒情報", 4),
        ("大雨特別警報", 5),
        ("記録的短時間大雨情報", 4),
        ("暴風警報", None),
        ("雷注意報", None),
    ],
)
def test_levels(kind: str, level: int | None) -> None:
    assert level_of(kind) == level


def test_an_r06_landslide_warning_drafts_a_level_4_alert(tmp_path: Path, prefix: str) -> None:
    settings = configured(tmp_path, prefix, "0121400")
    draft = draft_for(telegram("15_16_01_241031_VPWW56.xml"), settings, url="https://x/t.xml")
    assert draft is not None
    assert draft.alert["title"] == "レベル４土砂災害危険警報が発表されました"
    assert draft.alert["level"] == 4
    assert draft.alert["hazard"] == "landslide"
    assert draft.alert["areas"] == []
    assert draft.alert["type"] == "alert"
    assert draft.alert["drill"] is False
    body = draft.alert["body"]
    assert "6月22日（月）午後11時00分、稚内市にレベル４土砂災害危険警報を発表しました" in body
    assert "とるべき行動（警戒レベル4）：危険な場所から全員避難" in body
    assert "気象庁の発表：宗谷地方にレベル４土砂災害危険警報を発表しています。" in body
    assert draft.source.kind == "レベル４土砂災害危険警報"
    assert draft.source.url == "https://x/t.xml"
    assert draft.source.report_time == "2020-06-22T23:00:00+09:00"
    alert = valid(draft.alert, settings)
    assert (alert.level, alert.severity) == (4, "emergency")


def test_an_h27_heavy_rain_warning_is_level_3(tmp_path: Path, prefix: str) -> None:
    settings = configured(tmp_path, prefix, "3220100")
    draft = draft_for(telegram("15_17_01_250123_VPWW54.xml"), settings)
    assert draft is not None
    assert draft.alert["title"] == "大雨警報（浸水害）が発表されています"
    assert (draft.alert["level"], draft.alert["hazard"]) == (3, "inland_flood")
    assert draft.signature == ("大雨警報（浸水害）",)  # 雷・強風・波浪注意報 make no alert
    assert valid(draft.alert, settings).severity == "warning"


def test_landslide_information_record_rain_and_a_wind_warning(tmp_path: Path, prefix: str) -> None:
    settings = configured(tmp_path, prefix, "3320900", "016010", "0121400")
    landslide = draft_for(telegram("17_03_01_190529_VXWW50.xml"), settings)
    assert landslide is not None
    assert landslide.alert["title"] == "土砂災害警戒情報が発表されました"
    assert (landslide.alert["level"], landslide.alert["hazard"]) == (4, "landslide")
    rain = draft_for(telegram("18_03_01_190412_VPOA50.xml"), settings)
    assert rain is not None
    assert rain.alert["title"] == "記録的短時間大雨情報が発表されました"
    assert rain.alert["level"] == 4
    assert "札幌市中央区付近で約１００ミリ" in rain.alert["body"]
    wind = draft_for(telegram("15_16_04_250630_VPWW58.xml"), settings)
    assert wind is not None
    assert "level" not in wind.alert  # 暴風 has no 警戒レベル
    assert wind.alert["severity"] == "warning"
    valid(wind.alert, settings)


def test_an_unrelated_area_or_test_telegram_makes_no_draft(tmp_path: Path, prefix: str) -> None:
    settings = configured(tmp_path, prefix, "1312000", "350")
    assert draft_for(telegram("15_16_01_241031_VPWW56.xml"), settings) is None
    assert draft_for(telegram("17_03_01_190529_VXWW50.xml"), settings) is None
    assert draft_for(telegram("15_17_01_250123_VPWW54.xml"), settings) is None
    trial = telegram("15_16_01_241031_VPWW56.xml", **{"<Status>通常": "<Status>試験"})
    assert draft_for(trial, configured(tmp_path, prefix, "0121400")) is None
    assert draft_for(telegram("15_16_01_241031_VPWW56.xml"), configured(tmp_path, prefix)) is None


def test_an_earthquake_at_or_over_the_threshold(tmp_path: Path, prefix: str) -> None:
    flash = telegram("32-35_01_01_100806_VXSE51.xml")
    draft = draft_for(flash, configured(tmp_path, prefix, "1312000", "350"))
    assert draft is not None
    assert draft.alert["title"] == "東京都２３区で震度４を観測しました"
    assert draft.alert["hazard"] == "earthquake"
    assert "level" not in draft.alert
    assert "8月11日（火）午前5時07分ころ、地震がありました。" in draft.alert["body"]
    stricter = configured(tmp_path, prefix, "350", jma_intensity="5-")
    assert draft_for(flash, stricter) is None
    # 練馬区 by its city code, as 震源・震度に関する情報 names cities; a drill (訓練)
    nerima = telegram(
        "32-35_01_03_240613_VXSE53.xml",
        **{"<Name>東京大田区</Name>": "<Name>東京練馬区</Name>", "1311100<": "1312000<"},
    )
    settings = configured(tmp_path, prefix, "1312000", "350", jma_intensity="3")
    drill = draft_for(nerima, settings)
    assert drill is not None
    assert drill.alert["title"] == "練馬区で震度３を観測しました"
    assert drill.alert["drill"] is True
    assert (
        "震源地は駿河湾、地震の規模（マグニチュード）は5.9と推定されます。" in drill.alert["body"]
    )
    assert "この地震による津波の心配はありません。" in drill.alert["body"]
    valid(drill.alert, settings)


async def test_repeats_are_taken_once_even_when_two_take_at_once(
    tmp_path: Path, prefix: str, redis: Redis
) -> None:
    settings = configured(tmp_path, prefix, "0121400")
    store = DraftStore(redis, Keys(prefix), settings)
    other = DraftStore(redis, Keys(prefix), settings)
    sample = telegram("15_16_01_241031_VPWW56.xml")
    first, second = await asyncio.gather(store.take(sample, "u"), other.take(sample, "u"))
    assert [d is not None for d in (first, second)].count(True) == 1
    assert await store.take(sample, "u") is None
    drafts = await store.list()
    assert len(drafts) == 1
    assert drafts[0].state == "pending"


async def test_updates_all_clears_and_cancellations_follow_the_event(
    tmp_path: Path, prefix: str, redis: Redis
) -> None:
    settings = configured(tmp_path, prefix, "1420600", jma_auto_issue=["特別警報"])
    auto = configured(tmp_path, prefix, "1420600", jma_auto_issue=["土砂災害危険警報"])
    store = DraftStore(redis, Keys(prefix), settings)
    issued = telegram("17_04_01_250630_VXWW50.xml")  # 小田原市 警戒 (serial 1)
    first = await store.take(issued, "u1")
    assert first is not None
    assert first.alert["title"] == "レベル４土砂災害危険警報が発表されました"
    assert await store.take(issued, "u1") is None  # a repeat
    assert await store.approve(first.id, "A1") == "ok"
    assert await store.approve(first.id, "A2") == "approved"
    lifted = await store.take(telegram("17_04_03_250630_VXWW50.xml"), "u3")
    assert lifted is not None
    assert lifted.alert["type"] == "cancel"
    assert lifted.follows == first.id
    assert lifted.alert["title"] == "レベル４土砂災害危険警報が解除されました"
    assert lifted.alert["level"] == 4
    assert await store.follows_alert(lifted) == "A1"
    assert [d.id for d in await store.list()] == [lifted.id, first.id]
    assert await store.dismiss(lifted.id) == "ok"
    assert await store.dismiss(lifted.id) == "dismissed"
    assert await store.dismiss("jma-none") == "missing"
    assert not store.auto_issue(first)
    assert DraftStore(redis, Keys(prefix), auto).auto_issue(first)


async def test_a_later_telegram_with_changes_drafts_an_update(
    tmp_path: Path, prefix: str, redis: Redis
) -> None:
    settings = configured(tmp_path, prefix, "0151100")  # 猿払村
    store = DraftStore(redis, Keys(prefix), settings)
    first = await store.take(telegram("15_16_01_241031_VPWW56.xml"), "u1")
    assert first is not None
    assert first.alert["title"] == "レベル３土砂災害警報が発表されています"
    same = telegram(
        "15_16_01_241031_VPWW56.xml", **{"T23:00:00+09:00</Report": "T23:30:00+09:00</Report"}
    )
    assert await store.take(same, "u2") is None  # the same kinds in force
    raised = telegram(
        "15_16_01_241031_VPWW56.xml",
        **{
            "T23:00:00+09:00</Report": "T23:40:00+09:00</Report",
            "<Name>レベル３土砂災害警報</Name>\n<Code>09</Code>\n<Status>継続</Status>": (
                "<Name>レベル４土砂災害危険警報</Name>\n<Code>49</Code>\n<Status>発表</Status>"
            ),
        },
    )
    update = await store.take(raised, "u3")
    assert update is not None
    assert update.alert["type"] == "update"
    assert update.follows == first.id
    assert update.alert["level"] == 4
    assert await store.follows_alert(update) is None  # the first was never approved
    alert = valid({**update.alert, "references": "A1"}, settings)
    assert alert.type == "update"


async def test_a_cancelled_telegram_drafts_the_cancellation_of_its_draft(
    tmp_path: Path, prefix: str, redis: Redis
) -> None:
    settings = configured(tmp_path, prefix, "350", jma_intensity="3")
    store = DraftStore(redis, Keys(prefix), settings)
    cancel = telegram("32-35_06_06_100915_VXSE53.xml")
    assert await store.take(cancel, "u0") is None  # nothing of the event to cancel
    # 震源・震度情報 of the same event (the 2008 sample's EventID), then its 取消
    issued = telegram(
        "32-35_01_03_240613_VXSE53.xml",
        **{"<EventID>20091001134500": "<EventID>20080614084350", "<Status>訓練": "<Status>通常"},
    )
    first = await store.take(issued, "u1")
    assert first is not None
    assert first.alert["drill"] is False
    cancelled = await store.take(
        telegram("32-35_06_06_100915_VXSE53.xml", **{"<Serial>3": "<Serial>4"}), "u2"
    )
    assert cancelled is not None
    assert cancelled.alert["type"] == "cancel"
    assert cancelled.follows == first.id
    assert cancelled.alert["title"] == "震源・震度に関する情報の発表は取り消されました"
    assert cancelled.alert["hazard"] == "earthquake"


def test_the_settings_hold_the_jma_to_its_interval(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ValueError, match="jma_interval"):
        make_settings(tmp_path, prefix, jma_interval=10)
    with pytest.raises(ValueError, match="jma_intensity"):
        make_settings(tmp_path, prefix, jma_intensity="5弱")
