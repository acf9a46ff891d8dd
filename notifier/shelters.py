"""The ward's shelters (指定緊急避難場所・指定避難所): read from the national standard
open-data CSV, kept in Redis, opened and closed by the desk.

The file is デジタル庁「自治体標準オープンデータセット」's 指定緊急避難場所一覧 or
指定避難所一覧 as the ward publishes it, in either of its two editions: the current one
(``ID``, ``名称``, ``所在地_連結表記``, ``緯度``, ``経度``, ``災害種別_洪水`` …,
``指定避難所との重複``) or the older one and the GSI's (``NO``, ``指定緊急避難場所名`` or
``施設・場所名``, ``住所``, …, ``指定避難所との住所同一``). Other columns are ignored.
The standard has no column for the ward's own areas: the file adds ``地区``, holding an
area's code (``nerima``) or its Japanese name (``練馬``). A hazard column holds ``1``
(or ○) where the shelter is designated for that hazard, empty (or 0) where not; a
missing hazard column means designated for none of that hazard. UTF-8 with or without
BOM, or Shift_JIS (cp932), as many municipal files are.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import asdict, dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT

from notifier.config import Ward
from notifier.csv_import import ImportRefused
from notifier.hazards import HAZARDS
from notifier.keys import Keys
from notifier.streams import as_text, multi

AREA_COLUMN = "地区"
# what the file's columns may be called, in the current edition first
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("ID", "NO", "共通ID"),
    "name": ("名称", "指定緊急避難場所名", "指定避難所名", "施設・場所名"),
    "address": ("所在地_連結表記", "住所"),
    "lat": ("緯度",),
    "lon": ("経度",),
    "area": (AREA_COLUMN,),
}
ALSO_SHELTER = ("指定避難所との重複", "指定避難所との住所同一", "指定緊急避難場所との重複")
YES, NO = {"1", "○", "◯", "〇"}, {"", "0"}
SHELTER_ID = re.compile(r"^[0-9A-Za-z_-]{1,40}$")
# the ward is in Tokyo: a point far outside Japan is a swapped or mistyped coordinate
LATITUDES, LONGITUDES = (20.0, 46.0), (122.0, 154.0)
MAX_NAME, MAX_ADDRESS, MAX_ROWS = 100, 200, 5000


@dataclass(frozen=True)
class Shelter:
    """One shelter of the ward. ``hazards`` are codes of notifier.hazards.HAZARDS, in
    that order; ``also_shelter``: a 指定緊急避難場所 that is also a 指定避難所."""

    id: str
    name: str
    address: str
    lat: float
    lon: float
    area: str
    hazards: tuple[str, ...]
    also_shelter: bool = False

    @property
    def map_url(self) -> str:
        """The shelter on the GSI's map (地理院地図), which needs no account or script."""
        return f"https://maps.gsi.go.jp/#17/{self.lat:.6f}/{self.lon:.6f}/"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Shelter:
        data = json.loads(raw)
        return cls(**{**data, "hazards": tuple(data["hazards"])})


@dataclass(frozen=True)
class ShelterState:
    shelter: Shelter
    opened: float | None  # when it was opened (epoch seconds), None: closed

    @property
    def is_open(self) -> bool:
        return self.opened is not None


def decode(raw: bytes) -> str:
    """The file's text: UTF-8 (a BOM is dropped), else Shift_JIS (cp932); ValueError if
    it is neither."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp932")
    except UnicodeDecodeError:
        raise ValueError("the file is neither UTF-8 nor Shift_JIS (cp932)") from None


def parse_csv(text: str, ward: Ward) -> list[Shelter]:
    """Check every row; raise ImportRefused naming each bad line (its number, the
    column, what is wrong: never more of the value than needed), else return them all."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in next(reader, [])]
    where: dict[str, int] = {}
    missing = []
    for field, names in COLUMNS.items():
        found = next((header.index(n) for n in names if n in header), None)
        if found is None:
            missing.append(names[0] if len(names) == 1 else " or ".join(names))
        else:
            where[field] = found
    if missing:
        raise ImportRefused([f"line 1: no column {m}" for m in missing])
    hazard_at = {code: _index(header, f"災害種別_{suffix}") for code, suffix in HAZARDS.items()}
    also_at = next((header.index(n) for n in ALSO_SHELTER if n in header), None)
    areas = {a.code: a.code for a in ward.areas} | {a.name: a.code for a in ward.areas}
    errors: list[str] = []
    shelters: list[Shelter] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(shelters) + len(errors) >= MAX_ROWS:
            errors.append(f"line {line}: more than {MAX_ROWS} shelters in one file")
            break
        bad = [f"line {line}: {m}" for m in _row_errors(row, header, where, hazard_at, also_at)]
        cells = {f: row[i].strip() if i < len(row) else "" for f, i in where.items()}
        sid, area = cells["id"], areas.get(cells["area"])
        if SHELTER_ID.match(sid) and sid in seen:
            bad.append(f"line {line}: {header[where['id']]}: {sid} is on line {seen[sid]} too")
        if area is None:
            known = ", ".join(a.code for a in ward.areas)
            bad.append(f"line {line}: {AREA_COLUMN}: not an area of the ward ({known})")
        if bad:
            errors.extend(bad)
            continue
        seen[sid] = line
        shelters.append(
            Shelter(
                id=sid,
                name=cells["name"],
                address=cells["address"],
                lat=float(cells["lat"]),
                lon=float(cells["lon"]),
                area=cast("str", area),
                hazards=tuple(c for c, i in hazard_at.items() if _cell(row, i) in YES),
                also_shelter=_cell(row, also_at) in YES,
            )
        )
    if not shelters and not errors:
        errors.append("line 2: no shelters in the file")
    if errors:
        raise ImportRefused(errors)
    return shelters


def _index(header: list[str], name: str) -> int | None:
    return header.index(name) if name in header else None


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def _row_errors(
    row: list[str],
    header: list[str],
    where: dict[str, int],
    hazard_at: dict[str, int | None],
    also_at: int | None,
) -> list[str]:
    if len(row) > len(header):
        return [f"{len(row)} columns, the header has {len(header)}"]
    errors = []

    def column(field: str) -> str:
        return header[where[field]]

    sid = _cell(row, where["id"])
    if not SHELTER_ID.match(sid):
        errors.append(f"{column('id')}: 1 to 40 letters, digits, - or _")
    for field, limit in (("name", MAX_NAME), ("address", MAX_ADDRESS)):
        value = _cell(row, where[field])
        if not value:
            errors.append(f"{column(field)}: empty")
        elif len(value) > limit:
            errors.append(f"{column(field)}: longer than {limit} characters")
    for field, (low, high) in (("lat", LATITUDES), ("lon", LONGITUDES)):
        try:
            degrees = float(_cell(row, where[field]))
        except ValueError:
            errors.append(f"{column(field)}: not a number in degrees")
            continue
        if not low <= degrees <= high:  # NaN fails this too
            errors.append(f"{column(field)}: {degrees:g} is outside Japan ({low:g}–{high:g})")
    for index in [*hazard_at.values(), also_at]:
        if index is not None and _cell(row, index) not in YES | NO:
            errors.append(f"{header[index]}: 1 or empty")
    return errors


class ShelterStore:
    """The shelters (one hash, id → the shelter's JSON) and which are open (a hash, id →
    when it was opened). An import replaces the whole set at once; a shelter still in
    the new file stays open if it was."""

    def __init__(self, redis: Redis, keys: Keys, ward: Ward) -> None:
        self.redis = redis
        self.keys = keys
        self.ward = ward

    async def replace(self, shelters: list[Shelter]) -> tuple[int, int]:
        """Store exactly these shelters, in one transaction; returns (stored, kept open)."""
        k = self.keys
        ids = {s.id for s in shelters}
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(k.shelters_open)
                    was_open = cast("dict[bytes, bytes]", await pipe.hgetall(k.shelters_open))
                    kept: dict[FieldT, EncodableT] = {
                        as_text(i): t for i, t in was_open.items() if as_text(i) in ids
                    }
                    multi(pipe)
                    pipe.delete(k.shelters, k.shelters_open)
                    if shelters:
                        pipe.hset(k.shelters, mapping={s.id: s.to_json() for s in shelters})
                    if kept:
                        pipe.hset(k.shelters_open, mapping=kept)
                    await pipe.execute()
                    return len(shelters), len(kept)
                except WatchError:
                    continue

    async def get(self, shelter_id: str) -> ShelterState | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.shelters, shelter_id)
            pipe.hget(self.keys.shelters_open, shelter_id)
            raw, opened = await pipe.execute()
        if raw is None:
            return None
        return ShelterState(Shelter.from_json(as_text(raw)), float(opened) if opened else None)

    async def all(self) -> list[ShelterState]:
        """Every shelter, open or not, in the stable order of ``open_for``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.shelters)
            pipe.hgetall(self.keys.shelters_open)
            rows, opened = await pipe.execute()
        when = {as_text(i): float(t) for i, t in cast("dict[bytes, bytes]", opened).items()}
        states = [
            ShelterState(shelter, when.get(shelter.id))
            for shelter in (Shelter.from_json(as_text(raw)) for raw in rows.values())
        ]
        return sorted(states, key=lambda s: self._order(s.shelter))

    def _order(self, shelter: Shelter) -> tuple[int, str, str]:
        """The ward's areas in their configured order, then by name, then by id."""
        codes = self.ward.area_codes
        rank = codes.index(shelter.area) if shelter.area in codes else len(codes)
        return rank, shelter.name, shelter.id

    async def open_for(self, areas: list[str], hazard: str | None) -> list[Shelter]:
        """The OPEN shelters of ``areas`` ([] = the whole ward) designated for ``hazard``
        (a code of notifier.hazards.HAZARDS; None = whatever they are designated for),
        ordered by the ward's areas as configured, then name, then id: the same list in
        the same order for every channel of one alert."""
        if hazard is not None and hazard not in HAZARDS:
            raise ValueError(f"unknown hazard {hazard!r}")
        wanted = set(areas)
        return [
            s.shelter
            for s in await self.all()
            if s.is_open
            and (not wanted or s.shelter.area in wanted)
            and (hazard is None or hazard in s.shelter.hazards)
        ]

    async def set_open(self, shelter_id: str, is_open: bool, now: float | None = None) -> bool:
        """Open or close one shelter; False if there is no such shelter. Opening one that
        is open keeps the time it was first opened."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(k.shelters)
                    if not await pipe.hexists(k.shelters, shelter_id):
                        return False
                    multi(pipe)
                    if is_open:
                        pipe.hsetnx(k.shelters_open, shelter_id, str(now or time.time()))
                    else:
                        pipe.hdel(k.shelters_open, shelter_id)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
