"""Cutting a notice's audience into delivery batches, straight from the subscriber index.

A (channel, language) share of a notice goes to channel ∩ (its areas ∪ whole ward) ∩
(its topics ∪ every topic) ∩ the readers' languages. Computing that set first (a
ZINTERSTORE of a million members) would keep the first batch waiting for a second, so a
Lua script (notifier/lua/cut.lua) walks the smallest of those sorted sets in the order of
its ids (ZRANGE … BYLEX), keeps the members that are in the others, and cuts them into
batches (``states.BatchEntry``) as it goes: the first batch is on its stream a
millisecond after the notice is dispatched.

The walk's position is the last id it took. Every copy of the index orders its ids the
same way, so the position means the same on a restarted Redis and on a promoted replica
(a SCAN cursor would not: it is a place in one server's hash table). Each call of the
script is atomic and records together its position, the batches it cut, the ids it took
(the ``seen`` set: an id is never cut twice, even by a walk that starts again) and the
progress counters; members short of a full batch wait in a ``carry`` sorted set for the
next call. A call is a function of what it reads (no random pick): done again on a replica
that lost its last writes, it cuts the same batches. A dispatcher that dies between
calls is taken over where it stopped. While a channel's audience is still being cut its
progress holds ``cutting``, so the notice is not done before the last batch exists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from notifier.keys import ALL, Keys
from notifier.logs import event
from notifier.states import Scripts

log = logging.getLogger(__name__)

STEPS_PER_CALL = 16  # pages of the walk (500 ids each) one call may take: Redis stays responsive
PAGE = 500


@dataclass
class Share:
    """One (channel, language) share of a notice: which sets to walk, in order, and which
    sets a member must also be in (one of each check)."""

    channel: str
    lang: str
    stream: str
    size: int
    sources: list[str]
    checks: list[list[str]]
    seen: str
    carry: str
    # its batches are numbered index, index + of, index + 2·of … (of: the channel's
    # shares), so each share's numbers are its own and a cut done again after lost writes
    # gives every batch the number it had; 0 for a share planned by the version before,
    # whose batches take the next number of the channel's one counter
    index: int = 0
    of: int = 0
    # the channel's sets of the share's languages: the first walk goes through these,
    # checking only areas and topics (checks[1:]); a walk again after a mismatch goes
    # through sources and every check. Empty: planned before they were kept, or while
    # they were being built
    direct: list[str] = dataclasses.field(default_factory=list)

    @property
    def field(self) -> str:
        return f"share:{self.channel}:{self.lang}"

    def route(self, again: bool) -> Route:
        """The sets a walk of this share takes: the direct sets on the first walk when
        there are some, else the sources with every check."""
        if self.direct and not again:
            name = f"{self.channel}:{self.lang}:direct"
            return Route(self.direct, self.checks[1:], name)
        return Route(self.sources, self.checks, f"{self.channel}:{self.lang}")


@dataclass(frozen=True)
class Route:
    sources: list[str]
    checks: list[list[str]]
    name: str

    def position(self, source: int) -> str:
        """The field of the cut's hash holding where the walk of ``source`` stands."""
        return f"position:{self.name}:{source}"


async def plan(
    redis: Redis,
    keys: Keys,
    notice_id: str,
    channel: str,
    groups: dict[str, list[str]],
    areas: list[str],
    topics: list[str] | None,
    within: str | None,
    stream: str,
    size: int,
) -> list[Share]:
    """The shares of one channel: per rendered language, the readers' languages it serves.

    Walked: the channel's set, or the languages' sets if together they are smaller."""
    by_lang = {lang: keys.by_language(lang) for langs in groups.values() for lang in langs}
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(keys.reach_built)
        pipe.zcard(keys.by_channel(channel))
        for key in by_lang.values():
            pipe.zcard(key)
        built, *sizes = await pipe.execute()
    channel_size, lang_size = sizes[0], dict(zip(by_lang, sizes[1:], strict=True))
    common: list[list[str]] = []
    if areas:
        common.append([keys.by_area(a) for a in [*areas, ALL]])
    if topics is not None:
        common.append([keys.by_topic(t) for t in [*topics, ALL]])
    if within is not None:
        common.append([within])
    shares = []
    for index, (lang, langs) in enumerate(sorted(groups.items())):
        lang_sets = [by_lang[w] for w in langs]
        if channel_size <= sum(lang_size[w] for w in langs):
            sources, checks = [keys.by_channel(channel)], [lang_sets, *common]
        else:
            sources, checks = lang_sets, [[keys.by_channel(channel)], *common]
        seen = keys.audience(notice_id, channel, lang)
        carry = f"{seen}:carry"
        direct = [keys.by_channel_language(channel, w) for w in langs] if built else []
        share = Share(channel, lang, stream, size, sources, checks, seen, carry, index)
        shares.append(dataclasses.replace(share, of=len(groups), direct=direct))
    return shares


class Cutter:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = Scripts(redis)

    def record(self, pipe: Pipeline, notice_id: str, shares: list[Share]) -> None:
        """Write the shares (in the dispatcher's transaction): a dispatcher that takes over
        walks the very same sets."""
        for share in shares:
            pipe.hset(self.keys.cut_counter(notice_id), share.field, json.dumps(asdict(share)))

    async def shares(self, notice_id: str) -> list[Share]:
        stored = cast(
            "dict[bytes, bytes]", await self.redis.hgetall(self.keys.cut_counter(notice_id))
        )
        found = [Share(**json.loads(v)) for f, v in stored.items() if f.startswith(b"share:")]
        return sorted(found, key=lambda s: (s.channel, s.lang))

    async def cut_all(self, notice_id: str, kind: str, shares: list[Share]) -> int:
        """Cut every share into batches; returns how many batches this call cut.

        Round by round over the shares: one batch of each first (every channel and
        language starts at once), then twice as many a round, up to 16."""
        channels = sorted({share.channel for share in shares})
        cutting = (
            await self.redis.hmget(
                self.keys.progress(notice_id), [f"{c}:cutting" for c in channels]
            )
            if channels
            else []
        )
        unfinished = {c for c, flag in zip(channels, cutting, strict=True) if flag}
        shares = [share for share in shares if share.channel in unfinished]  # a takeover's
        cut = await self._walk(notice_id, kind, shares, again=False)
        short = await self.check(notice_id, shares)
        if short:  # walk the channel's audience again, from the channel and language sets
            # with every check (should the direct sets be wrong): the seen sets keep
            # anyone from a repeat
            event(log, "cut.mismatch", logging.WARNING, notice=notice_id, **short)
            again = [share for share in shares if share.channel in short]
            async with self.redis.pipeline(transaction=True) as pipe:
                for share in again:
                    route = share.route(again=True)
                    for source in range(len(route.sources)):
                        pipe.hset(self.keys.cut_counter(notice_id), route.position(source), "-")
                await pipe.execute()
            cut += await self._walk(notice_id, kind, again, again=True)
            still = await self.check(notice_id, again)
            if still:  # residents came or left while the audience was being cut
                event(log, "cut.audience_changed", logging.WARNING, notice=notice_id, **still)
        await self.finish(notice_id, shares)
        return cut

    async def check(self, notice_id: str, shares: list[Share]) -> dict[str, str]:
        """The channels whose cut does not come to the audience counted when the notice was
        planned, each as ``"<cut> of <planned>"``."""
        channels = sorted({share.channel for share in shares})
        if not channels:
            return {}
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(k.progress(notice_id), [f"{c}:audience" for c in channels])
            for share in shares:
                pipe.scard(share.seen)
            planned, *sizes = await pipe.execute()
        cut: dict[str, int] = dict.fromkeys(channels, 0)
        for share, size in zip(shares, sizes, strict=True):
            cut[share.channel] += int(size)
        return {
            c: f"{cut[c]} of {int(p)}"
            for c, p in zip(channels, planned, strict=True)
            if p is not None and cut[c] != int(p)
        }

    async def _walk(self, notice_id: str, kind: str, shares: list[Share], again: bool) -> int:
        cut, most = 0, 1
        # each share with its route and the source being walked
        active = [(share, share.route(again), 0) for share in shares]
        while active:
            async with self.redis.pipeline(transaction=False) as pipe:
                for share, route, i in active:
                    await self._call(pipe, notice_id, kind, share, route, i, most)
                replies = await pipe.execute()
            following = []
            for (share, route, i), (batches, finished) in zip(active, replies, strict=True):
                cut += int(batches)
                if not finished:
                    following.append((share, route, i))
                elif i + 1 < len(route.sources):
                    following.append((share, route, i + 1))
            active, most = following, min(most * 2, 16)
        return cut

    async def _call(
        self,
        pipe: Pipeline,
        notice_id: str,
        kind: str,
        share: Share,
        route: Route,
        source: int,
        most: int,
    ) -> None:
        k = self.keys
        await self.scripts.run(
            "cut",
            client=pipe,
            source_key=route.sources[source],
            seen_key=share.seen,
            carry_key=share.carry,
            stream_key=share.stream,
            cut_key=k.cut_counter(notice_id),
            progress_key=k.progress(notice_id),
            check_keys=[key for check in route.checks for key in check],
            notice=notice_id,
            channel=share.channel,
            lang=share.lang,
            kind=kind,
            size=share.size,
            most=most,
            position_field=route.position(source),
            last_source="1" if source == len(route.sources) - 1 else "0",
            steps_per_call=STEPS_PER_CALL,
            page_size=PAGE,
            number_offset=share.index,
            number_step=share.of,
            check_sizes=[len(check) for check in route.checks],
        )

    async def finish(self, notice_id: str, shares: list[Share]) -> None:
        """Every share is cut: drop the scratch sets, and settle the notice if its
        batches were all delivered while it was being cut."""
        k = self.keys
        scratch = [key for s in shares for key in (s.seen, s.carry)]
        await self.scripts.run(
            "finish",
            progress_key=k.progress(notice_id),
            notice_key=k.notice(notice_id),
            scratch_keys=[*scratch, k.drill_audience(notice_id)],
            now=time.time(),
            channels=sorted({s.channel for s in shares}),
        )
