"""A JMA telegram → a draft alert in the ward's wording (pure), and the store of drafts (Redis).

A draft is an alert pending the emergency desk's approval: the fields of the alert JSON
(notifier/models.py ``Alert``) and where it came from. ``draft_for`` decides and words it;
``DraftStore.take`` records it once per telegram, atomically, whoever else takes the same
telegram at the same time. Nothing here sends anything. The mapping is in docs/jma.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from redis.asyncio import Redis

from notifier.config import Settings
from notifier.jma import Area, Kind, Observed, Telegram, intensity_rank
from notifier.keys import Keys
from notifier.levels import LEVELS
from notifier.states import Scripts
from notifier.streams import as_text
from notifier.when import local_time

State = Literal["pending", "approved", "dismissed"]
SEEN_TTL = 14 * 24 * 3600  # a repeat comes within minutes; two weeks is more than enough
ACTIVE = ("発表", "継続")
LEVELLED = ("大雨", "洪水", "高潮", "土砂災害")  # the hazards the JMA gives 警戒レベル to
DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
HALF_TO_FULL = str.maketrans("0123456789", "０１２３４５６７８９")
QUAKE_WORDS = {"5-": "５弱", "5+": "５強", "6-": "６弱", "6+": "６強"}


@dataclass(frozen=True)
class Source:
    """Where a draft came from, as the desk sees it."""

    title: str  # Control/Title: 気象警報・注意報（Ｒ０６）（土砂）
    head_title: str
    headline: str  # the JMA's Head/Headline/Text
    url: str  # the telegram
    event_id: str
    serial: str
    status: str  # 通常, 訓練
    info_type: str  # 発表, 訂正, 取消
    kind: str  # the principal kind: 大雨警報, 土砂災害警戒情報, 震度速報 …
    report_time: str  # ISO 8601


@dataclass(frozen=True)
class Draft:
    id: str
    alert: dict[
        str, Any
    ]  # the alert JSON (kind, title, body, areas, level, hazard, severity, type, drill)
    source: Source
    signature: tuple[str, ...]  # what a later telegram is compared with: the kinds in force
    event: str  # the telegram's event
    follows: str | None = None  # the earlier draft an update or all-clear follows
    state: State = "pending"
    alert_id: str | None = None  # the alert it became, once approved
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Draft:
        data = json.loads(text)
        data["source"] = Source(**data["source"])
        data["signature"] = tuple(data["signature"])
        return cls(**data)


def level_of(kind: str) -> int | None:
    """A kind's 警戒レベル: the （Ｒ０６） name says it (レベル４…); in the older telegrams
    注意報 2, 警報 3, 特別警報 5 for the hazards the guideline levels (大雨, 洪水, 高潮,
    土砂災害); 土砂災害警戒情報 4. Others (暴風, 大雪, 雷 …) have none."""
    found = re.match(r"レベル([０-９0-9])", kind)
    if found:
        return int(found.group(1).translate(DIGITS))
    if kind in ("土砂災害警戒情報", RAIN):  # RAIN: issued at 危険度分布's 危険 (レベル4相当)
        return 4
    if not kind.startswith(LEVELLED):
        return None
    if kind.endswith("特別警報"):
        return 5
    return 3 if kind.endswith("警報") else 2 if kind.endswith("注意報") else None


def hazard_of(kind: str, condition: str = "") -> str | None:
    name = re.sub(r"^レベル.", "", kind)
    if "土砂災害" in name or (name.startswith("大雨") and "土砂災害" in condition):
        return "landslide"
    if name.startswith("大雨") or name.startswith(RAIN):
        return "inland_flood"
    if name.startswith(("洪水", "氾濫")):
        return "flood"
    return "storm_surge" if name.startswith("高潮") else None


RAIN = "記録的短時間大雨情報"


def label(kind: Kind) -> str:
    """How residents read a kind: 大雨警報（土砂災害）."""
    return f"{kind.name}（{kind.condition}）" if kind.condition else kind.name


def _worth(kind: Kind) -> bool:
    """Kinds that make a draft: those with a level, and every 警報 and 特別警報."""
    return kind.name not in ("", "なし") and (
        level_of(kind.name) is not None or kind.name.endswith("警報")
    )


def draft_for(
    telegram: Telegram,
    settings: Settings,
    *,
    url: str = "",
    earlier: Draft | None = None,
    draft_id: str | None = None,
) -> Draft | None:
    """The draft a telegram makes for the configured areas, given the event's ``earlier``
    draft (the latest, if any); None when it does not concern them or changes nothing.

    試験 telegrams make none; 訓練 ones make drills. 取消 cancels the earlier draft;
    a telegram lifting every kind for the areas is the all-clear of the earlier draft.
    """
    if telegram.status == "試験" or not settings.jma_areas:
        return None
    at = _Taking(telegram, settings, url, earlier, draft_id)
    if telegram.info_type == "取消":
        if earlier is None:
            return None
        words = (
            f"{earlier.source.kind}の発表は取り消されました",
            f"気象庁は、{_when(telegram, settings)}、先の{earlier.source.kind}の発表を"
            "取り消しました。",
        )
        return _make(at, words, kind=earlier.source.kind, cancel=True)
    if telegram.family == "earthquake":
        return _quake(at)
    return _warning(at)


@dataclass(frozen=True)
class _Taking:
    """What a draft is made from."""

    telegram: Telegram
    settings: Settings
    url: str
    earlier: Draft | None
    draft_id: str | None


def _warning(at: _Taking) -> Draft | None:
    telegram, settings, earlier = at.telegram, at.settings, at.earlier
    items = telegram.items_for(settings.jma_areas)
    if not items:
        return None
    place = _place(items[0].area, settings)
    kinds = [k for item in items for k in item.kinds if _worth(_named(k, telegram))]
    kinds = [_named(k, telegram) for k in kinds]
    active = list(dict.fromkeys(label(k) for k in kinds if k.status in ACTIVE))
    new = list(dict.fromkeys(label(k) for k in kinds if k.status == "発表"))
    lifted = list(dict.fromkeys(label(k) for k in kinds if k.status == "解除"))
    when = _when(telegram, settings)
    if not active:
        if earlier is None:
            return None
        gone = "・".join(lifted) or earlier.source.kind
        words = (
            f"{gone}が解除されました",
            f"気象庁は、{when}、{place}の{gone}を解除しました。\n\n" + _jma(telegram),
        )
        return _make(at, words, kind=earlier.source.kind, cancel=True)
    signature = tuple(sorted(active))
    if earlier is not None and earlier.signature == signature:
        return None  # the same kinds in force: nothing for residents
    ranked = sorted(
        (k for k in kinds if k.status in ACTIVE), key=lambda k: -(level_of(k.name) or 0)
    )
    top = ranked[0]
    level = max((level_of(k.name) or 0 for k in ranked), default=0) or None
    if new:
        title = f"{'・'.join(new)}が発表されました"
        said = f"気象庁は、{when}、{place}に{'・'.join(new)}を発表しました。"
    elif lifted:
        title = f"{'・'.join(lifted)}が解除されました（{'・'.join(active)}は継続）"
        said = f"気象庁は、{when}、{place}の{'・'.join(lifted)}を解除しました。"
    else:
        title = f"{'・'.join(active)}が発表されています"
        said = f"{when}現在、{place}に{'・'.join(active)}が発表されています。"
    lines = [said, f"発表中の警報・注意報：{'、'.join(active)}"]
    if level is not None:
        lines.append(f"とるべき行動（警戒レベル{level}）：{LEVELS[level].action}")
    lines.append(_jma(telegram))
    alert = {
        "level": level,
        "hazard": hazard_of(top.name, top.condition),
        "severity": _severity(level, top.name),
    }
    return _make(
        at, (title, "\n\n".join(lines)), kind=label(top), signature=signature, fields=alert
    )


def _named(kind: Kind, telegram: Telegram) -> Kind:
    """A kind by the name residents know: VXWW50's 警戒 is 土砂災害警戒情報 (in 2026's
    telegrams レベル４土砂災害危険警報, as their title says)."""
    if telegram.family == "landslide" and kind.name in ("警戒", "解除"):
        name = (
            "レベル４土砂災害危険警報" if "危険警報" in telegram.head_title else "土砂災害警戒情報"
        )
        return replace(kind, name=name)
    return kind


def _quake(at: _Taking) -> Draft | None:
    telegram, settings, earlier = at.telegram, at.settings, at.earlier
    observed = telegram.intensity_for(settings.jma_areas)
    if observed is None or intensity_rank(observed.max_int) < intensity_rank(
        settings.jma_intensity
    ):
        return None
    shindo = f"震度{_shindo(observed)}"
    place = _place(observed.area, settings)
    quake = telegram.hypocentre
    signature = (shindo, quake.name if quake else "", (quake.magnitude or "") if quake else "")
    if earlier is not None and earlier.signature == signature:
        return None
    shaken = quake.origin_time if quake and quake.origin_time else telegram.target_time
    lines = [
        f"{local_time(shaken, settings.tz) + 'ころ、' if shaken else ''}地震がありました。"
        f"{place}で{shindo}を観測しました。"
    ]
    if quake and quake.name:
        size = (
            f"、地震の規模（マグニチュード）は{quake.magnitude}と推定されます"
            if quake.magnitude
            else ""
        )
        lines.append(f"震源地は{quake.name}{size}。")
    lines.extend(telegram.comments[:1])
    lines.append("落ち着いて身の安全を確保し、火の元を確かめてください。余震に注意してください。")
    lines.append(_jma(telegram))
    rank = intensity_rank(observed.max_int)
    alert = {
        "level": None,
        "hazard": "earthquake",
        "severity": "emergency" if rank >= 4 else "warning",
    }
    words = (f"{place}で{shindo}を観測しました", "\n\n".join(lines))
    return _make(at, words, kind=telegram.title, signature=signature, fields=alert)


def _shindo(observed: Observed) -> str:
    return QUAKE_WORDS.get(observed.max_int, observed.max_int.translate(HALF_TO_FULL))


def _place(area: Area, settings: Settings) -> str:
    """The ward's own name where the JMA names it (東京練馬区 → 練馬区), else the JMA's."""
    return settings.ward.name if area.name.endswith(settings.ward.name) else area.name


def _when(telegram: Telegram, settings: Settings) -> str:
    return local_time(telegram.report_time, settings.tz)


def _jma(telegram: Telegram) -> str:
    return f"気象庁の発表：{telegram.headline}" if telegram.headline else ""


def _severity(level: int | None, kind: str) -> str:
    if level is not None:
        return "emergency" if level >= 4 else "warning" if level == 3 else "advisory"
    return "emergency" if kind.endswith("特別警報") else "warning"


def _make(
    at: _Taking,
    words: tuple[str, str],
    *,
    kind: str,
    signature: tuple[str, ...] = (),
    fields: dict[str, Any] | None = None,
    cancel: bool = False,
) -> Draft:
    """The draft: an alert, an update of the earlier draft, or (``cancel``) its all-clear
    or cancellation, which keeps the level, hazard and severity of what it ends."""
    telegram, earlier = at.telegram, at.earlier
    title, body = words
    alert: dict[str, Any] = {
        "kind": "alert",
        "title": title[:100],
        "body": body.strip()[:5000],
        "areas": [],  # every JMA area the ward configures is the whole ward (docs/jma.md)
        "type": "cancel" if cancel else "update" if earlier is not None else "alert",
        "drill": telegram.status == "訓練",
    }
    if cancel and earlier is not None:
        alert.update({k: earlier.alert.get(k) for k in ("level", "hazard", "severity")})
    alert.update(fields or {})
    if alert.get("level") is None:
        alert.pop("level", None)
    if alert.get("hazard") is None:
        alert.pop("hazard", None)
    source = Source(
        title=telegram.title,
        head_title=telegram.head_title,
        headline=telegram.headline,
        url=at.url,
        event_id=telegram.event_id,
        serial=telegram.serial,
        status=telegram.status,
        info_type=telegram.info_type,
        kind=kind,
        report_time=telegram.report_time.isoformat(),
    )
    return Draft(
        id=at.draft_id or f"jma-{secrets.token_hex(8)}",
        alert=alert,
        source=source,
        signature=signature,
        event=telegram.event,
        follows=earlier.id if earlier is not None else None,
    )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DraftStore:
    """Drafts in Redis: taken once per telegram, listed newest first, decided once."""

    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis, self.keys, self.settings = redis, keys, settings
        self.scripts = Scripts(redis)  # jma_take.lua, jma_decide.lua

    async def take(self, telegram: Telegram, url: str = "") -> Draft | None:
        """The draft this telegram makes, stored; None for a repeat (same EventID, serial,
        status and InfoType) or a telegram that makes none. Two takers of one telegram at
        the same time make one draft."""
        k = self.keys
        event_key = k.jma_event(digest(telegram.event))
        for _ in range(5):
            pointer = await self.redis.get(event_key)
            earlier = await self.get(as_text(pointer)) if pointer else None
            draft = draft_for(telegram, self.settings, url=url, earlier=earlier)
            close = draft is not None and draft.alert["type"] == "cancel"
            outcome = await self.scripts.run(
                "jma_take",
                seen_key=k.jma_seen(digest(telegram.key)),
                event_key=event_key,
                drafts_key=k.jma_drafts,
                draft_key=k.jma_draft(draft.id if draft else "-"),
                draft_id=draft.id if draft else "",
                draft=draft.to_json() if draft else "",
                now=datetime.now(UTC).timestamp(),
                earlier=earlier.id if earlier else "",
                close="close" if close else "open",
                seen_ttl=SEEN_TTL,
            )
            if outcome != b"retry":
                return draft if outcome == b"draft" else None
        return None

    async def get(self, draft_id: str) -> Draft | None:
        reply = await self.redis.hmget(
            self.keys.jma_draft(draft_id), ["draft", "state", "alert_id"]
        )
        text, state, alert_id = cast("list[bytes | None]", reply)
        if not text or not state:
            return None
        return replace(
            Draft.from_json(text),
            state=cast("State", as_text(state)),
            alert_id=as_text(alert_id) if alert_id else None,
        )

    async def list(self, limit: int = 50, offset: int = 0) -> list[Draft]:
        """Drafts, newest first."""
        ids = await self.redis.zrevrange(self.keys.jma_drafts, offset, offset + limit - 1)
        found = [await self.get(as_text(i)) for i in cast("list[bytes]", ids)]
        return [d for d in found if d is not None]

    async def approve(self, draft_id: str, alert_id: str) -> str:
        """Mark a pending draft approved as the alert ``alert_id``: 'ok', 'missing', or the
        state it is already in ('approved', 'dismissed')."""
        return await self._decided(draft_id, "approved", alert_id)

    async def dismiss(self, draft_id: str) -> str:
        return await self._decided(draft_id, "dismissed", "")

    async def _decided(self, draft_id: str, state: str, alert_id: str) -> str:
        reply = await self.scripts.run(
            "jma_decide", draft_key=self.keys.jma_draft(draft_id), state=state, alert_id=alert_id
        )
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def follows_alert(self, draft: Draft) -> str | None:
        """The alert the draft's earlier draft became: the ``references`` of an update or
        all-clear (None: it was not approved, so send this one as a new alert)."""
        earlier = await self.get(draft.follows) if draft.follows else None
        return earlier.alert_id if earlier else None

    def auto_issue(self, draft: Draft) -> bool:
        """Whether the operator lets this draft's kind go out without approval
        (``jma_auto_issue``: a kind, or its ending, e.g. 特別警報)."""
        return any(draft.source.kind.endswith(k) for k in self.settings.jma_auto_issue if k)
