"""CAP 1.2 (Common Alerting Protocol) documents → the ward's alerts. Pure: bytes in, data out.

A document is read safely (no DTD, no entities, a size limit), checked against the CAP 1.2
schema (notifier/schemas/cap-1.2.xsd) and the standard's rules that a schema can't say,
then mapped: its areas to ward areas by ``geocode`` value or ``areaDesc`` (configuration),
severity and urgency to ours, ``Exercise``/``Test`` to a drill, a 警戒レベル (a
``<parameter>``, else the 避難情報 its ``<event>`` names) to the alert's level, and the
hazard its ``<event>`` names to ours (docs/contract.md has the table).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from lxml import etree

from notifier.config import Ward
from notifier.text import is_link

NS = "urn:oasis:names:tc:emergency:cap:1.2"
SCHEMA = Path(__file__).with_name("schemas") / "cap-1.2.xsd"
_Q = {"cap": NS}
MAX_DEPTH = 16  # CAP's deepest element is alert/info/area/geocode/value
# the <parameter> valueNames that carry a 警戒レベル (compared without case); the first is
# the one we write (notifier/cap_out.py)
LEVEL_NAMES = ("警戒レベル", "EvacuationLevel", "AlertLevel", "level")
# 避難情報 as <event> or <headline> name them → their level; the pre-2021 name of level 3
# (避難準備・高齢者等避難開始) contains 高齢者等避難, and 避難指示（緊急） is level 4's old one
EVACUATION_LEVELS = (("緊急安全確保", 5), ("避難指示", 4), ("高齢者等避難", 3))
# words in <event> or <headline> → our hazard code; 内水氾濫 before 氾濫 so it is not a flood
HAZARD_WORDS = (
    ("内水氾濫", "inland_flood"),
    ("洪水", "flood"),
    ("氾濫", "flood"),
    ("土砂", "landslide"),
    ("がけ崩れ", "landslide"),
    ("崖崩れ", "landslide"),
    ("高潮", "storm_surge"),
    ("津波", "tsunami"),
    ("地震", "earthquake"),
    ("火災", "fire"),
    ("火事", "fire"),
    ("噴火", "volcano"),
    ("火山", "volcano"),
)


class CapError(ValueError):
    """A CAP document we can't take; ``element`` names where (``alert/info[1]/severity``)."""

    def __init__(self, element: str, message: str) -> None:
        super().__init__(f"{element}: {message}")
        self.element = element
        self.message = message


@dataclass(frozen=True)
class Reference:
    sender: str
    identifier: str


@dataclass
class CapMessage:
    identifier: str
    sender: str
    status: str  # Actual, Exercise, Test
    msg_type: str  # Alert, Update, Cancel
    references: list[Reference] = field(default_factory=list)
    alert: dict[str, Any] = field(default_factory=dict)  # the JSON of our alert (no id yet)


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def parse(raw: bytes, ward: Ward, max_bytes: int) -> CapMessage:
    """Read a CAP 1.2 document; raise CapError naming the element at fault."""
    if len(raw) > max_bytes:
        raise CapError("alert", f"the document is larger than {max_bytes} bytes")
    try:  # the gate: refuses DTDs, entity declarations and external references
        gate = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise CapError("alert", f"not accepted: {type(e).__name__} (no DTD or entities)") from None
    except SafeET.ParseError as e:
        raise CapError("alert", f"not well-formed XML: {e}") from None
    if _deeper_than(gate, MAX_DEPTH):
        raise CapError("alert", f"elements nest deeper than {MAX_DEPTH} levels")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as e:  # what the gate took and libxml2 does not
        raise CapError("alert", f"not accepted as XML: {e.msg}") from None
    if root.tag != f"{{{NS}}}alert":
        raise CapError("alert", f"the root element must be <alert> in the namespace {NS}")
    schema = _schema()
    if not schema.validate(root):
        errors = list(schema.error_log)
        error = errors[0] if errors else None
        element = _path(root.getroottree(), error.path if error else None)
        message = (error.message if error else "invalid").replace("{" + NS + "}", "")
        raise CapError(element, message.replace("Element ", "", 1))
    return _read(root, ward)


def _deeper_than(root: Any, limit: int) -> bool:
    """Whether elements nest more than ``limit`` deep below ``root`` (no recursion)."""
    level = [root]
    for _ in range(limit):
        level = [child for node in level for child in node]
        if not level:
            return False
    return True


def _path(tree: Any, xpath: str | None) -> str:
    """The element libxml2 names as ``/*/*[7]/*[5]``, as a reader names it:
    ``alert/info/severity`` (with a position where there are several: ``info[2]``)."""
    found = tree.xpath(xpath) if xpath else []
    if not found:
        return "alert"
    names = []
    node = found[0]
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        same = [] if parent is None else [c for c in parent if c.tag == node.tag]
        names.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        node = parent
    return "/".join(reversed(names))


def _text(node: Any, path: str) -> str | None:
    found = node.find(path, _Q)
    if found is None or found.text is None:
        return None
    text: str = found.text.strip()
    return text or None


def _read(root: Any, ward: Ward) -> CapMessage:
    status = _text(root, "cap:status") or ""
    msg_type = _text(root, "cap:msgType") or ""
    if status in ("System", "Draft"):
        raise CapError("alert/status", f"{status} messages are not delivered to residents")
    if msg_type in ("Ack", "Error"):
        raise CapError("alert/msgType", f"{msg_type} messages are not alerts to deliver")
    if _text(root, "cap:scope") != "Public":
        raise CapError("alert/scope", "only Public alerts are broadcast to residents")
    message = CapMessage(
        identifier=_text(root, "cap:identifier") or "",
        sender=_text(root, "cap:sender") or "",
        status=status,
        msg_type=msg_type,
    )
    for name, value in (("identifier", message.identifier), ("sender", message.sender)):
        if re.search(r"[\s,<&]", value):
            raise CapError(f"alert/{name}", "must not contain spaces, commas, < or &")
    references = _text(root, "cap:references")
    if msg_type in ("Update", "Cancel"):
        if not references:
            raise CapError("alert/references", f"an {msg_type} must name the message it follows")
        for item in references.split():
            parts = item.split(",")
            if len(parts) != 3 or not all(parts):
                raise CapError("alert/references", "each reference is sender,identifier,sent")
            message.references.append(Reference(parts[0], parts[1]))
    infos = root.findall("cap:info", _Q)
    if not infos and msg_type != "Cancel":
        raise CapError("alert/info", f"an {msg_type} needs at least one <info>")
    if infos:
        message.alert = _alert(infos, ward)
    message.alert["drill"] = status != "Actual"
    return message


def _severity(severity: str, urgency: str) -> str:
    if severity == "Extreme" or (severity == "Severe" and urgency == "Immediate"):
        return "emergency"
    return "warning" if severity == "Severe" else "advisory"


def _alert(infos: list[Any], ward: Ward) -> dict[str, Any]:
    """Our alert from the Japanese <info> (or the first); an English one is its translation."""

    def language(info: Any) -> str:
        return (_text(info, "cap:language") or "en-US").lower()

    position = {id(info): i + 1 for i, info in enumerate(infos)}
    main = next((i for i in infos if language(i).startswith("ja")), infos[0])
    where = f"alert/info[{position[id(main)]}]"
    data: dict[str, Any] = {
        **_words(main),
        "severity": _severity(_text(main, "cap:severity") or "", _text(main, "cap:urgency") or ""),
        "areas": _areas(main, ward, where),
    }
    level = _level(main)
    if level is not None:
        data["level"] = level
    hazard = _hazard(main)
    if hazard is not None:
        data["hazard"] = hazard
    web = _text(main, "cap:web")
    if web and is_link(web):  # a link we could not send is left out, never the alert
        data["url"] = web
    english = next((i for i in infos if i is not main and language(i).startswith("en")), None)
    if english is not None:
        data["translations"] = {"en": _words(english)}
    return data


def _level(info: Any) -> int | None:
    """The 警戒レベル an <info> gives: a level <parameter> (``4``, ``レベル4``, ``警戒レベル４``),
    else the 避難情報 its <event> (or else <headline>) names, the highest if several; a
    lifting (解除) names none."""
    names = {n.casefold() for n in LEVEL_NAMES}
    for parameter in info.findall("cap:parameter", _Q):
        if (_text(parameter, "cap:valueName") or "").casefold() in names:
            value = unicodedata.normalize("NFKC", _text(parameter, "cap:value") or "")
            found = re.fullmatch(r"\D*([1-5])", value)
            if found:
                return int(found.group(1))
    for text in (_text(info, "cap:event"), _text(info, "cap:headline")):
        if text and "解除" not in text:
            levels = [n for word, n in EVACUATION_LEVELS if word in text]
            if levels:
                return max(levels)
    return None


def _hazard(info: Any) -> str | None:
    """Our hazard where <event> (or else <headline>) names exactly one."""
    for text in (_text(info, "cap:event"), _text(info, "cap:headline")):
        rest, found = text or "", set()
        for word, code in HAZARD_WORDS:
            if word in rest:
                found.add(code)
                rest = rest.replace(word, "")
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def _words(info: Any) -> dict[str, str]:
    title = _text(info, "cap:headline") or _text(info, "cap:event") or ""
    parts = [_text(info, "cap:description"), _text(info, "cap:instruction")]
    body = "\n\n".join(p for p in parts if p) or title
    return {"title": title[:100], "body": body[:5000]}


def _areas(info: Any, ward: Ward, where: str) -> list[str]:
    """Ward area codes for the <area>s of an <info>; [] is the whole ward, as is an <info>
    without one (CAP's <area> is optional; a JSON alert without areas means the same)."""
    areas = info.findall("cap:area", _Q)
    codes: list[str] = []
    for n, area in enumerate(areas, start=1):
        names = [v.text.strip() for v in area.findall("cap:geocode/cap:value", _Q) if v.text]
        names.append(_text(area, "cap:areaDesc") or "")
        mapped = next((m for m in map(ward.cap_area, names) if m is not None), None)
        if mapped is None:
            raise CapError(
                f"{where}/area[{n}]/areaDesc",
                "not an area of the ward (no geocode or areaDesc in the configuration matches)",
            )
        if not mapped:
            return []  # the whole ward
        codes.extend(c for c in mapped if c not in codes)
    return codes
