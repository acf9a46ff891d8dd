"""The JMA's disaster-prevention XML (気象庁防災情報XML) → typed telegrams. Pure: bytes in,
data out.

Read safely as CAP is (no DTD, no entities, no network, a size limit, a depth limit). Taken:
気象警報・注意報 (VPWW53, the （Ｈ２７） VPWW54 and the （Ｒ０６） VPWW55–61), 土砂災害警戒情報
(VXWW50), 記録的短時間大雨情報 (VPOA50), 震度速報 (VXSE51) and 震源・震度に関する情報 (VXSE53).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from lxml import etree

NS = "http://xml.kishou.go.jp/jmaxml1/"
HEAD = NS + "informationBasis1/"
METEOROLOGY = NS + "body/meteorology1/"
SEISMOLOGY = NS + "body/seismology1/"
ELEMENTS = NS + "elementBasis1/"
MAX_BYTES = 2 * 1024 * 1024  # the largest samples are ~250 KB; a big earthquake's VXSE53 more
MAX_DEPTH = 24
STATUSES = ("通常", "訓練", "試験")
INFO_TYPES = ("発表", "訂正", "遅延", "取消")
WARNINGS = ("気象特別警報・警報・注意報", "気象警報・注意報（Ｈ２７）")
R06 = "気象警報・注意報（Ｒ０６）"  # followed by （大雨）, （土砂） …
LANDSLIDE = "土砂災害警戒情報"
RECORD_RAIN = "記録的短時間大雨情報"
QUAKES = ("震度速報", "震源・震度に関する情報")
INTENSITIES = ("1", "2", "3", "4", "5-", "5+", "6-", "6+", "7")


class JmaError(ValueError):
    """A telegram we can't take; ``element`` names where (``Report/Head/ReportDateTime``)."""

    def __init__(self, element: str, message: str) -> None:
        super().__init__(f"{element}: {message}")
        self.element = element
        self.message = message


@dataclass(frozen=True)
class Area:
    name: str
    code: str


@dataclass(frozen=True)
class Kind:
    name: str  # 大雨警報, レベル４土砂災害危険警報, 警戒 (VXWW50), なし
    code: str
    status: str  # 発表, 継続, 解除, なし, 発表警報・注意報はなし
    condition: str = ""  # the （Ｈ２７） 大雨警報's 土砂災害 / 浸水害 / 土砂災害、浸水害


@dataclass(frozen=True)
class WarningItem:
    type: str  # Body/Warning@type: 気象警報・注意報（市町村等） …
    area: Area
    kinds: tuple[Kind, ...]


@dataclass(frozen=True)
class Observed:
    """The highest intensity observed in an area (地震情報／細分区域) or a city (市町村等)."""

    area: Area
    max_int: str  # one of INTENSITIES
    city: bool = False


@dataclass(frozen=True)
class Hypocentre:
    name: str  # 駿河湾
    magnitude: str | None  # 5.9; None where the JMA says 不明
    origin_time: datetime | None


@dataclass(frozen=True)
class Telegram:
    title: str  # Control/Title: the kind of telegram
    status: str  # 通常, 訓練, 試験
    office: str  # Control/EditorialOffice
    head_title: str  # 島根県気象警報・注意報
    report_time: datetime
    info_type: str  # 発表, 訂正, 遅延, 取消
    event_id: str  # empty in warnings
    serial: str  # empty in warnings and 震度速報
    headline: str
    target_time: datetime | None = None  # what it is about: 震度速報's time of the shaking
    warnings: tuple[WarningItem, ...] = ()
    observed: tuple[Observed, ...] = ()
    max_int: str | None = None
    hypocentre: Hypocentre | None = None
    comments: tuple[
        str, ...
    ] = ()  # an earthquake's 固定付加文: この地震による津波の心配はありません。

    @property
    def family(self) -> str:
        """``warning``, ``landslide``, ``record_rain`` or ``earthquake``."""
        if self.title == LANDSLIDE:
            return "landslide"
        if self.title == RECORD_RAIN:
            return "record_rain"
        return "earthquake" if self.title in QUAKES else "warning"

    @property
    def event(self) -> str:
        """What later telegrams of the same event share: the EventID, else (warnings) the
        telegram's kind and its office's headline title."""
        return self.event_id or f"{self.title}|{self.head_title}"

    @property
    def key(self) -> str:
        """A telegram and its repeats: event, serial (else report time), status, InfoType."""
        serial = self.serial or self.report_time.isoformat()
        return f"{self.title}|{self.event}|{serial}|{self.status}|{self.info_type}"

    def items_for(self, codes: list[str]) -> list[WarningItem]:
        return [item for item in self.warnings if item.area.code in codes]

    def intensity_for(self, codes: list[str]) -> Observed | None:
        """The configured place's observed intensity: a city where the telegram names one,
        else the highest of the configured areas."""
        found = [o for o in self.observed if o.area.code in codes]
        cities = [o for o in found if o.city]
        found = cities or found
        return max(found, key=lambda o: INTENSITIES.index(o.max_int), default=None)


def intensity_rank(value: str) -> int:
    if value not in INTENSITIES:
        raise ValueError(f"an intensity is one of {', '.join(INTENSITIES)} (not {value!r})")
    return INTENSITIES.index(value)


def load(raw: bytes, max_bytes: int, root: str) -> Any:
    """Well-formed XML, read safely, or JmaError naming ``root``."""
    if len(raw) > max_bytes:
        raise JmaError(root, f"the document is larger than {max_bytes} bytes")
    try:  # the gate: refuses DTDs, entity declarations and external references
        gate = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise JmaError(root, f"not accepted: {type(e).__name__} (no DTD or entities)") from None
    except SafeET.ParseError as e:
        raise JmaError(root, f"not well-formed XML: {e}") from None
    level = [gate]
    for _ in range(MAX_DEPTH):
        level = [child for node in level for child in node]
    if level:
        raise JmaError(root, f"elements nest deeper than {MAX_DEPTH} levels")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        return etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as e:
        raise JmaError(root, f"not accepted as XML: {e.msg}") from None


def parse(raw: bytes, max_bytes: int = MAX_BYTES) -> Telegram:
    """Read a telegram; raise JmaError naming the element at fault."""
    root = load(raw, max_bytes, "Report")
    if root.tag != f"{{{NS}}}Report":
        raise JmaError("Report", f"the root element must be <Report> in the namespace {NS}")
    title = _need(root, f"{{{NS}}}Control/{{{NS}}}Title", "Report/Control/Title")
    if not (
        title in WARNINGS or title.startswith(R06) or title in (LANDSLIDE, RECORD_RAIN, *QUAKES)
    ):
        raise JmaError("Report/Control/Title", f"{title!r} is not a telegram the reader takes")
    status = _need(root, f"{{{NS}}}Control/{{{NS}}}Status", "Report/Control/Status")
    if status not in STATUSES:
        raise JmaError("Report/Control/Status", f"must be one of {'/'.join(STATUSES)}")
    head = root.find(f"{{{HEAD}}}Head")
    if head is None:
        raise JmaError("Report/Head", "missing (in the namespace informationBasis1)")
    h = f"{{{HEAD}}}"
    info_type = _need(head, h + "InfoType", "Report/Head/InfoType")
    if info_type not in INFO_TYPES:
        raise JmaError("Report/Head/InfoType", f"must be one of {'/'.join(INFO_TYPES)}")
    when = _need(head, h + "ReportDateTime", "Report/Head/ReportDateTime")
    report_time = _time(when, "Report/Head/ReportDateTime")
    target = _text(head, h + "TargetDateTime")
    body = next((c for c in root if etree.QName(c).localname == "Body"), None)
    if body is None or etree.QName(body).namespace not in (METEOROLOGY, SEISMOLOGY):
        raise JmaError("Report/Body", "missing, or not a meteorology or seismology body")
    b = f"{{{etree.QName(body).namespace}}}"
    telegram = Telegram(
        title=title,
        status=status,
        office=_text(root, f"{{{NS}}}Control/{{{NS}}}EditorialOffice"),
        head_title=_text(head, h + "Title"),
        report_time=report_time,
        info_type=info_type,
        event_id=_text(head, h + "EventID"),
        serial=_text(head, h + "Serial"),
        headline=_text(head, f"{h}Headline/{h}Text"),
        target_time=_time(target, "Report/Head/TargetDateTime") if target else None,
        warnings=tuple(_warnings(body, b)),
        observed=tuple(_observed(body, b)),
        max_int=_text(body, f"{b}Intensity/{b}Observation/{b}MaxInt") or None,
        hypocentre=_hypocentre(body, b),
        comments=tuple(t.text.strip() for t in body.iterfind(f"{b}Comments/*/{b}Text") if t.text),
    )
    if telegram.family == "earthquake" and info_type != "取消" and telegram.max_int is None:
        raise JmaError("Report/Body/Intensity/Observation/MaxInt", "an earthquake needs one")
    return telegram


def _text(node: Any, path: str) -> str:
    found = node.find(path)
    return "" if found is None or found.text is None else str(found.text).strip()


def _need(node: Any, path: str, where: str) -> str:
    text = _text(node, path)
    if not text:
        raise JmaError(where, "missing or empty")
    return text


def _time(value: str, where: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise JmaError(where, "not a date-time such as 2026-06-22T23:00:00+09:00") from None
    if at.tzinfo is None:
        raise JmaError(where, "a date-time needs its offset (+09:00)")
    return at


def _warnings(body: Any, b: str) -> list[WarningItem]:
    items = []
    for n, warning in enumerate(body.iterfind(b + "Warning"), start=1):
        for m, item in enumerate(warning.iterfind(b + "Item"), start=1):
            where = f"Report/Body/Warning[{n}]/Item[{m}]"
            kinds = tuple(
                Kind(
                    name=_text(k, b + "Name"),
                    code=_text(k, b + "Code"),
                    status=_need(k, b + "Status", f"{where}/Kind/Status"),
                    condition=_text(k, b + "Condition"),
                )
                for k in item.iterfind(b + "Kind")
            )
            for area in item.iterfind(b + "Area"):
                code = _need(area, b + "Code", f"{where}/Area/Code")
                items.append(
                    WarningItem(warning.get("type", ""), Area(_text(area, b + "Name"), code), kinds)
                )
    return items


def _observed(body: Any, b: str) -> list[Observed]:
    found = []
    for area in body.iterfind(f"{b}Intensity/{b}Observation/{b}Pref/{b}Area"):
        for node, city in [(area, False), *((c, True) for c in area.iterfind(b + "City"))]:
            value = _text(node, b + "MaxInt")
            if value in INTENSITIES:  # an area without one (未入電) says nothing yet
                found.append(
                    Observed(Area(_text(node, b + "Name"), _text(node, b + "Code")), value, city)
                )
    return found


def _hypocentre(body: Any, b: str) -> Hypocentre | None:
    quake = body.find(b + "Earthquake")
    if quake is None:
        return None
    name = _text(quake, f"{b}Hypocenter/{b}Area/{b}Name")
    magnitude = _text(quake, f"{{{ELEMENTS}}}Magnitude")
    origin = _text(quake, b + "OriginTime")
    return Hypocentre(
        name=name,
        magnitude=magnitude if magnitude and magnitude.lower() != "nan" else None,
        origin_time=_time(origin, "Report/Body/Earthquake/OriginTime") if origin else None,
    )
