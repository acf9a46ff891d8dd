"""CAP 1.2 documents: read safely, checked against the schema and the standard's rules,
mapped to the ward's alerts."""

from __future__ import annotations

import html

import pytest

from notifier.alerts import validate
from notifier.cap import CapError, parse
from notifier.config import Settings

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
