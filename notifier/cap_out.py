"""The ward's alerts → CAP 1.2 documents and the public Atom feed of them. Pure: data in,
bytes out.

An alert is the CAP message ``{sender},{id},{sent}``: the sender is the host of the
service's public address, the identifier the alert's id, sent when it was received. An
update is an ``Update`` and the all-clear a ``Cancel``, each referencing every message of
the chain before it. One ``<info>`` in Japanese and one per translation; the level as the
``<parameter>`` notifier/cap.py reads back (``警戒レベル``). The feed follows the CAP Atom
convention of public alert hubs: each entry carries its CAP document inline (content of
type application/cap+xml) and links to it (``/alerts/{id}.cap``). docs/contract.md has
the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from lxml import etree

from notifier.cap import LEVEL_NAMES, NS
from notifier.config import Ward
from notifier.hazards import HAZARDS
from notifier.levels import LEVELS

ATOM = "http://www.w3.org/2005/Atom"
LANGUAGE_TAGS = {"ja": "ja", "easy": "ja-x-easy", "zh": "zh-Hans"}  # else the code itself
JIS_CODE = "JISX0402"  # the <geocode> valueName of the ward's municipality code
MSG_TYPES = {"alert": "Alert", "update": "Update", "cancel": "Cancel"}
# our severity → CAP's severity and urgency (notifier/cap.py maps them back the same way)
GRADES = {
    "emergency": ("Extreme", "Immediate"),
    "warning": ("Severe", "Expected"),
    "advisory": ("Moderate", "Expected"),
}
CATEGORIES = {
    "flood": "Met",
    "inland_flood": "Met",
    "storm_surge": "Met",
    "landslide": "Geo",
    "earthquake": "Geo",
    "tsunami": "Geo",
    "volcano": "Geo",
    "fire": "Fire",
}
RESPONSES = {5: "Shelter", 4: "Evacuate", 3: "Evacuate"}  # 緊急安全確保: secure safety now


@dataclass(frozen=True)
class Published:
    """An alert as the public sees it: its notice JSON and when it was sent."""

    id: str
    notice: dict[str, Any]
    sent: datetime


def sender(public_url: str) -> str:
    """The CAP sender: the host (and port) of the service's public address."""
    return urlsplit(public_url).netloc or "localhost"


def cap_time(when: datetime, tz: ZoneInfo) -> str:
    """CAP's date-time: seconds and an explicit offset (+09:00), never Z."""
    return when.astimezone(tz).replace(microsecond=0).isoformat()


def atom_time(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def municipality_code(ward: Ward) -> str | None:
    """The ward's 6-digit JIS X 0402 code, the first of its CAP names that is one."""
    return next((v for v in ward.cap if re.fullmatch(r"\d{6}", v)), None)


def alert_element(
    alert: Published, chain: list[Published], ward: Ward, sender_id: str, tz: ZoneInfo
) -> Any:
    """The CAP <alert> of ``alert``; ``chain`` is what it follows, oldest first."""
    notice = alert.notice
    root = etree.Element(f"{{{NS}}}alert", nsmap={None: NS})

    def add(parent: Any, name: str, text: str) -> Any:
        node = etree.SubElement(parent, f"{{{NS}}}{name}")
        node.text = text
        return node

    msg_type = MSG_TYPES[notice.get("type", "alert")]
    add(root, "identifier", alert.id)
    add(root, "sender", sender_id)
    add(root, "sent", cap_time(alert.sent, tz))
    add(root, "status", "Exercise" if notice.get("drill") else "Actual")
    add(root, "msgType", msg_type)
    add(root, "scope", "Public")
    if chain:
        refs = " ".join(f"{sender_id},{p.id},{cap_time(p.sent, tz)}" for p in chain)
        add(root, "references", refs)
    level = LEVELS.get(notice["level"]) if notice.get("level") else None
    hazard = notice.get("hazard")
    languages = ["ja", *notice.get("translations", {})]
    for lang in languages:
        words = notice if lang == "ja" else notice["translations"][lang]
        info = etree.SubElement(root, f"{{{NS}}}info")
        add(info, "language", LANGUAGE_TAGS.get(lang, lang))
        add(info, "category", CATEGORIES.get(hazard or "", "Safety"))
        event = _event(level.name if level else None, hazard) if lang == "ja" else None
        add(info, "event", event or words["title"])
        if msg_type == "Cancel":
            add(info, "responseType", "AllClear")
            severity, urgency, certainty = "Minor", "Past", "Observed"
        else:
            if level and level.number in RESPONSES:
                add(info, "responseType", RESPONSES[level.number])
            severity, urgency = GRADES[notice["severity"]]
            certainty = "Likely"
        add(info, "urgency", urgency)
        add(info, "severity", severity)
        add(info, "certainty", certainty)
        add(info, "senderName", ward.label(lang))
        add(info, "headline", words["title"])
        add(info, "description", words["body"])
        if notice.get("url"):
            add(info, "web", notice["url"])
        add(info, "contact", ward.phone)
        if level and msg_type != "Cancel":
            parameter = etree.SubElement(info, f"{{{NS}}}parameter")
            add(parameter, "valueName", LEVEL_NAMES[0])
            add(parameter, "value", str(level.number))
        _areas(info, add, notice.get("areas", []), ward, lang)
    return root


def _event(level: str | None, hazard: str | None) -> str | None:
    """避難指示（洪水）, as notices name an order and what it is for; or just one of them."""
    name = HAZARDS.get(hazard or "")
    if level and name:
        return f"{level}（{name}）"
    return level or name


def _areas(info: Any, add: Any, areas: list[str], ward: Ward, lang: str) -> None:
    """An <area> per ward area (its first CAP name, as notifier/cap.py reads it back), or
    one for the whole ward with its municipality code."""
    if not areas:
        area = etree.SubElement(info, f"{{{NS}}}area")
        add(area, "areaDesc", ward.label(lang))
        code = municipality_code(ward)
        if code:
            geocode = etree.SubElement(area, f"{{{NS}}}geocode")
            add(geocode, "valueName", JIS_CODE)
            add(geocode, "value", code)
        return
    for code in areas:
        named = ward.area(code)
        names = [n for n in named.cap if not n.isdigit()]
        area = etree.SubElement(info, f"{{{NS}}}area")
        add(area, "areaDesc", names[0] if lang == "ja" and names else named.label(lang))


def cap_document(element: Any) -> bytes:
    out: bytes = etree.tostring(element, xml_declaration=True, encoding="UTF-8")
    return out


def atom_feed(
    entries: list[tuple[Published, Any]], ward: Ward, public_url: str, updated: datetime
) -> bytes:
    """The Atom 1.0 feed of ``entries`` (an alert and its CAP <alert>), newest first."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    feed.set("{http://www.w3.org/XML/1998/namespace}lang", "ja")

    def add(parent: Any, name: str, text: str | None = None, **attrs: str) -> Any:
        node = etree.SubElement(parent, f"{{{ATOM}}}{name}", attrs)
        node.text = text
        return node

    add(feed, "id", f"{public_url}/alerts.atom")
    add(feed, "title", f"{ward.name} 緊急情報")
    add(feed, "updated", atom_time(updated))
    author = add(feed, "author")
    add(author, "name", ward.name)
    add(feed, "link", rel="self", type="application/atom+xml", href=f"{public_url}/alerts.atom")
    for alert, element in entries:
        href = f"{public_url}/alerts/{alert.id}.cap"
        entry = add(feed, "entry")
        add(entry, "id", href)
        add(entry, "title", alert.notice["title"])
        add(entry, "updated", atom_time(alert.sent))
        add(entry, "published", atom_time(alert.sent))
        add(entry, "link", rel="alternate", type="application/cap+xml", href=href)
        add(entry, "summary", alert.notice["body"][:200])
        content = add(entry, "content", type="application/cap+xml")
        content.append(element)
    out: bytes = etree.tostring(feed, xml_declaration=True, encoding="UTF-8")
    return out
