"""The shelters' CSV (the national standard format and the ward's 地区), their store in
Redis, and open_for: the list an alert shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config import PROJECT_ROOT, Settings
from notifier.csv_import import ImportRefused
from notifier.runtime import Runtime
from notifier.shelters import Shelter, ShelterStore, decode, parse_csv

HEADER = (
    "全国地方公共団体コード,ID,名称,所在地_連結表記,緯度,経度,災害種別_洪水,"
    "災害種別_崖崩れ、土石流及び地滑り,災害種別_高潮,災害種別_地震,災害種別_津波,"
    "災害種別_大規模な火事,災害種別_内水氾濫,災害種別_火山現象,指定避難所との重複,地区"
)
SCHOOL = "131202,1,練馬第一小学校,東京都練馬区練馬一丁目1番1号,35.7372,139.6521,1,,,1,,,1,,1,nerima"
PARK = "131202,2,光が丘公園,東京都練馬区光が丘四丁目1番,35.7628,139.6290,,,,1,,1,,,,光が丘"
HALL = "131202,3,大泉地区区民館,東京都練馬区大泉町一丁目2番,35.7600,139.5900,1,,,,,,,,,oizumi"


def csv_of(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.fixture
def shelters(runtime: Runtime) -> ShelterStore:
    return ShelterStore(runtime.redis, runtime.keys, runtime.settings.ward)


def test_a_row_of_the_standard_format_becomes_a_shelter(settings: Settings) -> None:
    school, park = parse_csv(csv_of(SCHOOL, PARK), settings.ward)
    assert school == Shelter(
        id="1",
        name="練馬第一小学校",
        address="東京都練馬区練馬一丁目1番1号",
        lat=35.7372,
        lon=139.6521,
        area="nerima",
        hazards=("flood", "earthquake", "inland_flood"),
        also_shelter=True,
    )
    assert park.area == "hikarigaoka"  # 地区 may name the area in Japanese
    assert park.hazards == ("earthquake", "fire") and not park.also_shelter
    assert school.map_url == "https://maps.gsi.go.jp/#17/35.737200/139.652100/"


def test_every_bad_line_is_reported_by_number_and_column(settings: Settings) -> None:
    text = csv_of(
        SCHOOL,
        "131202,1,二度目の番号,東京都練馬区,35.74,139.65,,,,1,,,,,,nerima",
        "131202,x/y,,東京都練馬区,139.65,35.74,はい,,,,,,,,,どこか",
        "",  # a blank line is skipped, not an error
        PARK,
        "131202,9,列が多い,東京都練馬区,35.74,139.65,,,,1,,,,,,nerima,余り",
    )
    with pytest.raises(ImportRefused) as refused:
        parse_csv(text, settings.ward)
    assert refused.value.errors == [
        "line 3: ID: 1 is on line 2 too",
        "line 4: ID: 1 to 40 letters, digits, - or _",
        "line 4: 名称: empty",
        "line 4: 緯度: 139.65 is outside Japan (20–46)",
        "line 4: 経度: 35.74 is outside Japan (122–154)",
        "line 4: 災害種別_洪水: 1 or empty",
        "line 4: 地区: not an area of the ward (nerima, hikarigaoka, shakujii, oizumi)",
        "line 7: 17 columns, the header has 16",
    ]
    assert "nothing was imported" in str(refused.value)


def test_a_file_without_the_columns_it_needs_is_refused_at_its_header(settings: Settings) -> None:
    with pytest.raises(ImportRefused) as refused:
        parse_csv("ID,名称,緯度,経度\n1,公園,35.7,139.6\n", settings.ward)
    assert refused.value.errors == [
        "line 1: no column 所在地_連結表記 or 住所",
        "line 1: no column 地区",
    ]
    with pytest.raises(ImportRefused, match="1 problem"):
        parse_csv(HEADER + "\n", settings.ward)


def test_the_older_edition_and_the_gsi_columns_are_read_too(settings: Settings) -> None:
    """NO, 指定緊急避難場所名, 住所, 指定避難所との住所同一; a hazard column it lacks is
    a hazard it is not designated for."""
    text = (
        "NO,都道府県コード又は市区町村コード,指定緊急避難場所名,住所,緯度,経度,"
        "災害種別_地震,災害種別_大規模な火事,指定避難所との住所同一,地区\n"
        "7,131202,石神井公園,東京都練馬区石神井台一丁目26番,35.7372,139.5977,1,1,,石神井\n"
    )
    (park,) = parse_csv(text, settings.ward)
    assert (park.id, park.name, park.area) == ("7", "石神井公園", "shakujii")
    assert park.hazards == ("earthquake", "fire") and not park.also_shelter


def test_utf8_with_or_without_bom_and_shift_jis_are_read() -> None:
    text = csv_of(SCHOOL)
    assert decode(text.encode("utf-8")) == text
    assert decode(b"\xef\xbb\xbf" + text.encode("utf-8")) == text
    assert decode(text.encode("cp932")) == text
    with pytest.raises(ValueError, match="neither UTF-8 nor Shift_JIS"):
        decode(b"\x82\xa0\x82 ")  # a lead byte that no second byte follows


def test_the_sample_of_the_default_config_is_valid(settings: Settings) -> None:
    raw = (PROJECT_ROOT / "config" / "shelters.csv").read_bytes()
    found = parse_csv(decode(raw), settings.ward)
    assert {s.area for s in found} == set(settings.ward.area_codes)
    for s in found:  # inside 練馬区
        assert 35.70 < s.lat < 35.79 and 139.55 < s.lon < 139.69, s.name


async def test_open_for_lists_the_open_shelters_of_the_areas_for_the_hazard(
    shelters: ShelterStore,
) -> None:
    await shelters.replace(parse_csv(csv_of(SCHOOL, PARK, HALL), shelters.ward))
    assert await shelters.open_for([], None) == []  # an imported shelter starts closed
    for sid in ("1", "2", "3"):
        assert await shelters.set_open(sid, True)

    def ids(found: list[Shelter]) -> list[str]:
        return [s.id for s in found]

    # the ward's areas in their configured order: nerima, hikarigaoka, shakujii, oizumi
    assert ids(await shelters.open_for([], None)) == ["1", "2", "3"]
    assert ids(await shelters.open_for([], "flood")) == ["1", "3"]
    assert ids(await shelters.open_for(["oizumi", "hikarigaoka"], None)) == ["2", "3"]
    assert ids(await shelters.open_for(["hikarigaoka"], "flood")) == []
    assert ids(await shelters.open_for(["nerima"], "earthquake")) == ["1"]
    assert await shelters.set_open("1", False)
    assert ids(await shelters.open_for([], "earthquake")) == ["2"]
    with pytest.raises(ValueError, match="unknown hazard"):
        await shelters.open_for([], "meteor")


async def test_an_import_replaces_the_set_and_keeps_the_open_state_of_those_still_there(
    shelters: ShelterStore, tmp_path: Path
) -> None:
    ward = shelters.ward
    await shelters.replace(parse_csv(csv_of(SCHOOL, PARK), ward))
    assert await shelters.set_open("1", True, now=1000.0)
    assert await shelters.set_open("2", True, now=2000.0)
    assert await shelters.set_open("1", True, now=3000.0)  # still open since it first opened

    renamed = PARK.replace("光が丘公園", "都立光が丘公園")
    assert await shelters.replace(parse_csv(csv_of(renamed, HALL), ward)) == (2, 1)
    states = {s.shelter.id: s for s in await shelters.all()}
    assert set(states) == {"2", "3"}  # 1 is gone, with its open state
    assert states["2"].opened == 2000.0 and states["2"].shelter.name == "都立光が丘公園"
    assert states["3"].opened is None
    assert await shelters.get("1") is None
    assert not await shelters.set_open("1", True)  # no such shelter: nothing opens
    await shelters.replace(parse_csv(csv_of(SCHOOL), ward))
    assert [s.id for s in await shelters.open_for([], None)] == []  # 1 came back closed
