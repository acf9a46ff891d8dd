"""CAP 1.2 documents: read safely, checked against the schema and the standard's rules,
mapped to the ward's alerts."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree

from notifier.alerts import validate
from notifier.cap import HAZARD_WORDS, NS, CapError, _schema, parse
from notifier.cap_out import Published, alert_element, cap_document
from notifier.config import Settings
from notifier.hazards import HAZARDS

LIMIT = 64 * 1024


def cap(
    *,
    identifier: str = "JMA-2026-0001",
    status: str = "Actual",
    msg_type: str = "Alert",
    scope: str = "Public",
    references: str | None = None,
    severity: str = "Extreme",
    urgency: str = "Immediate",
    area: str = "<areaDesc>東京都練馬区</areaDesc>",
    info: str | None = None,
    extra_info: str = "",
    doctype: str = "",
) -> bytes:
    refs = f"<references>{references}</references>" if references else ""
    if info is None:
        info = f"""<info>
    <language>ja-JP</language>
    <category>Met</category>
    <event>大雨特別警報</event>
    <urgency>{urgency}</urgency>
    <severity>{severity}</severity>
    <certainty>Observed</certainty>
    <headline>練馬区に大雨特別警報</headline>
    <description>数十年に一度の大雨となっています。</description>
    <instruction>命を守る行動をとってください。</instruction>
    <web>https://www.city.nerima.tokyo.jp/bousai/</web>
    <area>{area}</area>
  </info>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>{doctype}
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>jma@example.jp</sender>
  <sent>2026-11-26T09:00:00+09:00</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>{scope}</scope>
  {refs}
  {info}{extra_info}
</alert>""".encode()


def test_a_valid_alert_becomes_the_wards_alert(settings: Settings) -> None:
    english = """<info><language>en-US</language><category>Met</category>
    <event>Heavy rain emergency warning</event><urgency>Immediate</urgency>
    <severity>Extreme</severity><certainty>Observed</certainty>
    <headline>Heavy rain emergency warning for Nerima</headline>
    <description>Record rainfall.</description>
    <area><areaDesc>東京都練馬区</areaDesc></area></info>"""
    message = parse(cap(extra_info=english), settings.ward, LIMIT)
    assert (message.status, message.msg_type, message.identifier) == (
        "Actual",
        "Alert",
        "JMA-2026-0001",
    )
    alert = message.alert
    assert alert["title"] == "練馬区に大雨特別警報"
    assert alert["body"] == "数十年に一度の大雨となっています。\n\n命を守る行動をとってください。"
    assert alert["severity"] == "emergency"
    assert alert["areas"] == []  # the whole ward
    assert alert["url"] == "https://www.city.nerima.tokyo.jp/bousai/"
    assert alert["drill"] is False
    assert alert["translations"]["en"]["title"] == "Heavy rain emergency warning for Nerima"


@pytest.mark.parametrize(
    ("severity", "urgency", "ours"),
    [
        ("Extreme", "Expected", "emergency"),
        ("Severe", "Immediate", "emergency"),
        ("Severe", "Expected", "warning"),
        ("Moderate", "Immediate", "advisory"),
        ("Minor", "Future", "advisory"),
    ],
)
def test_severity_and_urgency_map_to_ours(
    settings: Settings, severity: str, urgency: str, ours: str
) -> None:
    message = parse(cap(severity=severity, urgency=urgency), settings.ward, LIMIT)
    assert message.alert["severity"] == ours


def test_areas_map_by_geocode_or_area_description(settings: Settings) -> None:
    two = "<areaDesc>光が丘地域</areaDesc></area><area><areaDesc>x</areaDesc>" + (
        "<geocode><valueName>ward-area</valueName><value>大泉地域</value></geocode>"
    )
    message = parse(cap(area=two), settings.ward, LIMIT)
    assert message.alert["areas"] == ["hikarigaoka", "oizumi"]
    by_code = (
        "<areaDesc>練馬</areaDesc>"
        "<geocode><valueName>JIS</valueName><value>131202</value></geocode>"
    )
    assert parse(cap(area=by_code), settings.ward, LIMIT).alert["areas"] == []


@pytest.mark.parametrize(
    ("document", "element"),
    [
        (cap(status="Bogus"), "alert/status"),
        (cap(scope="Private"), "alert/scope"),
        (cap(severity="Huge"), "alert/info/severity"),
        (cap(msg_type="Update"), "alert/references"),
        (cap(msg_type="Cancel", references="bad-reference"), "alert/references"),
        (cap(status="Draft"), "alert/status"),
        (cap(status="System"), "alert/status"),
        (cap(msg_type="Ack", references="a,b,2026-11-26T09:00:00+09:00"), "alert/msgType"),
        (cap(area="<areaDesc>札幌市</areaDesc>"), "alert/info[1]/area[1]/areaDesc"),
        (cap(info=""), "alert/info"),
        (cap(identifier="two words"), "alert/identifier"),
        (cap().replace(b"<sender>jma@example.jp</sender>", b""), "alert/sent"),
        (cap().replace(b"+09:00</sent>", b"</sent>"), "alert/sent"),
        (b"<alert>not CAP</alert>", "alert"),
        (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><unclosed></alert>", "alert"),
    ],
)
def test_a_bad_document_names_the_element(
    settings: Settings, document: bytes, element: str
) -> None:
    with pytest.raises(CapError) as caught:
        parse(document, settings.ward, LIMIT)
    assert caught.value.element == element, caught.value


def test_entities_and_dtds_are_refused_before_anything_is_expanded(settings: Settings) -> None:
    bomb = '<!DOCTYPE alert [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    document = cap(doctype=bomb).replace(b"<event>", b"<event>&b;")
    with pytest.raises(CapError, match=r"DTD|Entities"):
        parse(document, settings.ward, LIMIT)
    external = '<!DOCTYPE alert SYSTEM "file:///etc/passwd">'
    with pytest.raises(CapError, match="DTD"):
        parse(cap(doctype=external), settings.ward, LIMIT)


def test_a_document_over_the_size_limit_is_refused_unread(settings: Settings) -> None:
    with pytest.raises(CapError, match="larger than"):
        parse(cap() + b" " * LIMIT, settings.ward, LIMIT)


def test_exercise_and_test_messages_are_drills(settings: Settings) -> None:
    for status in ("Exercise", "Test"):
        assert parse(cap(status=status), settings.ward, LIMIT).alert["drill"] is True


def test_update_and_cancel_carry_their_references(settings: Settings) -> None:
    refs = "jma@example.jp,JMA-2026-0001,2026-11-26T09:00:00+09:00"
    message = parse(cap(msg_type="Update", references=refs), settings.ward, LIMIT)
    assert [(r.sender, r.identifier) for r in message.references] == [
        ("jma@example.jp", "JMA-2026-0001")
    ]
    cancel = parse(cap(msg_type="Cancel", references=refs, info=""), settings.ward, LIMIT)
    assert cancel.msg_type == "Cancel"
    assert cancel.alert == {"drill": False}


@pytest.mark.parametrize(
    "web",
    ["https://www.city.nerima.tokyo.jp/a b", 'https://a.jp/"><script>', "http://a.jp/", "x" * 9],
)
def test_a_web_link_we_could_not_send_is_left_out_not_the_alert(
    settings: Settings, web: str
) -> None:
    document = cap().replace(
        b"<web>https://www.city.nerima.tokyo.jp/bousai/</web>",
        f"<web>{html.escape(web)}</web>".encode(),
    )
    message = parse(document, settings.ward, settings.cap_max_bytes)
    assert "url" not in message.alert
    assert validate({k: v for k, v in message.alert.items() if k != "drill"}, settings).url is None


def evacuation(event: str, parameter: str = "", headline: str = "練馬区からのお知らせ") -> bytes:
    return cap(
        info=f"""<info><language>ja-JP</language><category>Safety</category>
    <event>{event}</event><urgency>Immediate</urgency><severity>Severe</severity>
    <certainty>Observed</certainty><headline>{headline}</headline>
    <description>石神井川の水位が上がっています。</description>{parameter}
    <area><areaDesc>石神井地域</areaDesc></area></info>"""
    )


def level_parameter(name: str, value: str) -> str:
    return f"<parameter><valueName>{name}</valueName><value>{value}</value></parameter>"


@pytest.mark.parametrize(
    ("name", "value", "level"),
    [
        ("警戒レベル", "4", 4),
        ("EvacuationLevel", "レベル5", 5),
        ("level", "警戒レベル３", 3),
        ("LEVEL", "Level 2", 2),
    ],
)
def test_a_level_parameter_becomes_the_alerts_level(
    settings: Settings, name: str, value: str, level: int
) -> None:
    message = parse(evacuation("大雨", level_parameter(name, value)), settings.ward, LIMIT)
    assert message.alert["level"] == level
    alert = validate({k: v for k, v in message.alert.items() if k != "drill"}, settings)
    assert alert.level == level
    assert alert.severity == "emergency"  # CAP's own severity still says it, not the level


@pytest.mark.parametrize(
    ("event", "headline", "level"),
    [
        ("避難指示", "練馬区からのお知らせ", 4),
        ("緊急安全確保", "練馬区からのお知らせ", 5),
        ("避難準備・高齢者等避難開始", "練馬区からのお知らせ", 3),
        ("洪水", "石神井地域に避難指示、光が丘地域に高齢者等避難", 4),
        ("避難指示の解除", "練馬区からのお知らせ", None),
        ("大雨特別警報", "練馬区に大雨特別警報", None),
    ],
)
def test_without_a_parameter_the_evacuation_information_named_gives_the_level(
    settings: Settings, event: str, headline: str, level: int | None
) -> None:
    message = parse(evacuation(event, headline=headline), settings.ward, LIMIT)
    assert message.alert.get("level") == level


def test_a_level_parameter_we_cannot_read_leaves_the_event_to_say(settings: Settings) -> None:
    document = evacuation("避難指示", level_parameter("警戒レベル", "高"))
    assert parse(document, settings.ward, LIMIT).alert["level"] == 4
    unread = evacuation("大雨", level_parameter("警戒レベル", "7"))
    assert "level" not in parse(unread, settings.ward, LIMIT).alert


@pytest.mark.parametrize(
    ("event", "hazard"),
    [
        ("洪水警報", "flood"),
        ("石神井川氾濫危険情報", "flood"),
        ("内水氾濫", "inland_flood"),
        ("土砂災害警戒情報", "landslide"),
        ("地震", "earthquake"),
        ("洪水・土砂災害", None),  # two hazards: neither is said to be the one
        ("避難指示", None),
    ],
)
def test_the_hazard_the_event_names_becomes_the_alerts(
    settings: Settings, event: str, hazard: str | None
) -> None:
    message = parse(evacuation(event), settings.ward, LIMIT)
    assert message.alert.get("hazard") == hazard


def test_every_hazard_word_maps_to_one_of_our_hazards() -> None:
    assert {code for _, code in HAZARD_WORDS} <= set(HAZARDS)


def published(alert_id: str, minutes: int, **notice: Any) -> Published:
    sent = datetime(2026, 11, 26, 0, minutes, tzinfo=UTC)
    fields = {"title": "避難指示", "body": "直ちに避難してください。", "severity": "emergency"}
    return Published(alert_id, {**fields, **notice}, sent)


def written(alert: Published, chain: list[Published], settings: Settings) -> bytes:
    element = alert_element(alert, chain, settings.ward, "city.example.jp", settings.tz)
    return cap_document(element)


def test_an_alert_written_as_cap_is_valid_and_reads_back_as_itself(settings: Settings) -> None:
    english = {"en": {"title": "Evacuation order", "body": "Leave now."}}
    alert = published("a1", 0, level=4, hazard="flood", areas=["shakujii"], translations=english)
    raw = written(alert, [], settings)
    root = etree.fromstring(raw)
    assert _schema().validate(root), _schema().error_log
    ns = {"c": NS}
    assert root.findtext("c:sent", namespaces=ns) == "2026-11-26T09:00:00+09:00"
    assert [i.findtext("c:language", namespaces=ns) for i in root.findall("c:info", ns)] == [
        "ja",
        "en",
    ]
    assert root.findtext("c:info/c:parameter/c:valueName", namespaces=ns) == "警戒レベル"
    message = parse(raw, settings.ward, LIMIT)
    assert (message.identifier, message.sender, message.msg_type) == (
        "a1",
        "city.example.jp",
        "Alert",
    )
    back = message.alert
    assert (back["level"], back["hazard"], back["severity"]) == (4, "flood", "emergency")
    assert back["areas"] == ["shakujii"]
    assert back["translations"]["en"]["title"] == "Evacuation order"


@pytest.mark.parametrize("severity", ["advisory", "warning", "emergency"])
def test_severity_written_reads_back_the_same(settings: Settings, severity: str) -> None:
    raw = written(published("a1", 0, severity=severity), [], settings)
    assert parse(raw, settings.ward, LIMIT).alert["severity"] == severity


def test_an_update_and_an_all_clear_reference_the_whole_chain(settings: Settings) -> None:
    first = published("a1", 0, level=3)
    update = published("a2", 5, level=4, type="update", references="a1")
    clear = published("a3", 9, type="cancel", references="a2", areas=[])
    raw = written(clear, [first, update], settings)
    root = etree.fromstring(raw)
    assert _schema().validate(root), _schema().error_log
    message = parse(raw, settings.ward, LIMIT)
    assert message.msg_type == "Cancel"
    assert [r.identifier for r in message.references] == ["a1", "a2"]
    refs = root.findtext(f"{{{NS}}}references")
    assert refs == (
        "city.example.jp,a1,2026-11-26T09:00:00+09:00 city.example.jp,a2,2026-11-26T09:05:00+09:00"
    )
    info = root.find(f"{{{NS}}}info")
    assert info is not None
    assert info.findtext(f"{{{NS}}}responseType") == "AllClear"
    assert info.find(f"{{{NS}}}parameter") is None
    assert info.findtext(f"{{{NS}}}area/{{{NS}}}geocode/{{{NS}}}value") == "131202"
    assert parse(written(update, [first], settings), settings.ward, LIMIT).msg_type == "Update"


def test_a_drill_is_an_exercise(settings: Settings) -> None:
    raw = written(published("a1", 0, drill=True), [], settings)
    assert parse(raw, settings.ward, LIMIT).status == "Exercise"


@pytest.mark.parametrize("hazard", sorted(HAZARDS))
def test_each_hazard_and_level_written_reads_back(settings: Settings, hazard: str) -> None:
    raw = written(published("a1", 0, level=5, hazard=hazard), [], settings)
    back = parse(raw, settings.ward, LIMIT).alert
    assert (back["level"], back["hazard"]) == (5, hazard)
