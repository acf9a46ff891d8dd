"""Cutting a notice's audience into delivery batches, straight from the subscriber index.

A (channel, language) share of a notice goes to channel ∩ (its areas ∪ whole ward) ∩
(its topics ∪ every topic) ∩ the readers' languages. Computing that set first (a
ZINTERSTORE of a million members) would keep the first batch waiting for a second, so a
Lua script walks the smallest of those sorted sets in the order of its ids (ZRANGE …
BYLEX), keeps the members that are in the others, and cuts them into batches as it goes:
the first batch is on its stream a millisecond after the notice is dispatched.

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

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.asyncio import Redis

from notifier.keys import ALL, Keys
from notifier.logs import event

log = logging.getLogger(__name__)

STEPS_PER_CALL = 16  # pages of the walk (500 ids each) one call may take: Redis stays responsive
PAGE = 500


def settle(progress: str, notice: str, now: str) -> str:
    """Lua that settles a notice whose every batch has an outcome: done, or failed if
    nothing at all could be delivered. The arguments are Lua expressions (KEYS[2] …)."""
    return SETTLE.replace("PROGRESS", progress).replace("NOTICE", notice).replace("NOW", now)


SETTLE = """
local fields = redis.call('HGETALL', PROGRESS)
local pending, sent, failed = 0, 0, 0
for i = 1, #fields, 2 do
  local name, value = fields[i], tonumber(fields[i + 1])
  if name:sub(-8) == ':pending' or name:sub(-8) == ':cutting' then pending = pending + value
  elseif name:sub(-5) == ':sent' then sent = sent + value
  elseif name:sub(-7) == ':failed' then failed = failed + value end
end
if pending <= 0 and redis.call('HGET', NOTICE, 'status') == 'dispatching' then
  local status = 'done'
  if sent == 0 and failed > 0 then status = 'failed' end
  redis.call('HSET', NOTICE, 'status', status, 'updated', NOW)
end
"""

# KEYS: 1 source set, 2 seen, 3 carry, 4 delivery stream, 5 cut hash, 6 progress,
#       7… the sets of each check (a member must be in one set of every check)
# ARGV: 1 notice id, 2 channel, 3 language, 4 kind, 5 batch size, 6 most batches,
#       7 position field, 8 last source of the share ('1'/'0'), 9 number of checks,
#       10… the number of sets in each check
_CUT = (
    """
local position = redis.call('HGET', KEYS[5], ARGV[7]) or '-'
if position == 'done' then return {0, 1} end
if position:sub(1, 1) ~= '(' then position = '-' end  -- anything else: from the start
local size, most = tonumber(ARGV[5]), tonumber(ARGV[6])
local checks, k = {}, 7
for c = 1, tonumber(ARGV[9]) do
  local sets = {}
  for i = 1, tonumber(ARGV[9 + c]) do sets[i] = KEYS[k]; k = k + 1 end
  checks[c] = sets
end
local function flags(command, key, members)  -- a command per 1,000: Lua's stack is small
  local found = {}
  for i = 1, #members, 1000 do
    local part = redis.call(command, key, unpack(members, i, math.min(i + 999, #members)))
    if type(part) == 'table' then  -- SMISMEMBER's 1/0, ZMSCORE's score/false; not SADD's count
      for j = 1, #part do found[i + j - 1] = part[j] ~= 0 and part[j] ~= false end
    end
  end
  return found
end
local function wanted(members)  -- those in a set of every check, once each, not seen before
  local keep = {}
  for i = 1, #members do keep[i] = true end
  for _, sets in ipairs(checks) do
    local found = {}
    for _, key in ipairs(sets) do
      local member_of = flags('ZMSCORE', key, members)
      for i = 1, #members do found[i] = found[i] or member_of[i] end
    end
    for i = 1, #members do keep[i] = keep[i] and found[i] end
  end
  local picked, page = {}, {}
  for i = 1, #members do
    if keep[i] and not page[members[i]] then
      page[members[i]] = true
      picked[#picked + 1] = members[i]
    end
  end
  local seen, new = flags('SMISMEMBER', KEYS[2], picked), {}
  for i = 1, #picked do
    if not seen[i] then new[#new + 1] = picked[i] end
  end
  flags('SADD', KEYS[2], new)
  return new
end
if redis.call('TYPE', KEYS[3])['ok'] == 'set' then  -- a cut begun by the version before
  local held = redis.call('SMEMBERS', KEYS[3])
  redis.call('DEL', KEYS[3])
  for _, member in ipairs(held) do redis.call('ZADD', KEYS[3], 0, member) end
end
local batch = {}  -- the carry first, in the order of its ids: a call done again after a
for i, v in ipairs(redis.call('ZPOPMIN', KEYS[3], size)) do  -- failover cuts the same
  if i % 2 == 1 then batch[#batch + 1] = v end  -- batches (the same retry keys, the same ids)
end
local cut, recipients = 0, 0
local function emit()
  table.sort(batch)
  local n = redis.call('HINCRBY', KEYS[5], ARGV[2], 1) - 1
  local data = '{"notice":' .. cjson.encode(ARGV[1]) .. ',"kind":' .. cjson.encode(ARGV[4])
    .. ',"channel":' .. cjson.encode(ARGV[2]) .. ',"lang":' .. cjson.encode(ARGV[3])
    .. ',"n":' .. n .. ',"recipients":' .. cjson.encode(batch) .. ',"areas":[],"size":'
    .. #batch .. ',"attempt":1}'
  redis.call('XADD', KEYS[4], '*', 'data', data)
  cut = cut + 1
  recipients = recipients + #batch
  batch = {}
end
local steps, finished = 0, false
while not finished do
  if #batch >= size then emit() end
  if cut >= most or steps >= """
    + str(STEPS_PER_CALL)
    + """ then break end
  local page = redis.call('ZRANGE', KEYS[1], position, '+', 'BYLEX', 'LIMIT', 0, """
    + str(PAGE)
    + """)
  steps = steps + 1
  if #page > 0 then position = '(' .. page[#page] end
  finished = #page < """
    + str(PAGE)
    + """
  for _, member in ipairs(wanted(page)) do
    batch[#batch + 1] = member
    if #batch == size then emit() end
  end
end
if finished and ARGV[8] == '1' and #batch > 0 then emit() end
if #batch > 0 then
  local scored = {}
  for _, member in ipairs(batch) do scored[#scored + 1] = 0; scored[#scored + 1] = member end
  redis.call('ZADD', KEYS[3], unpack(scored))
end
redis.call('HSET', KEYS[5], ARGV[7], finished and 'done' or position)
if recipients > 0 then
  redis.call('HINCRBY', KEYS[6], ARGV[2] .. ':recipients', recipients)
  redis.call('HINCRBY', KEYS[6], ARGV[2] .. ':pending', recipients)
end
return {cut, finished and 1 or 0}
"""
)

# KEYS: progress, notice, then the cut's scratch sets.  ARGV: now, then the channels cut.
_FINISH = """
for i = 2, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i] .. ':cutting') end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
""" + settle("KEYS[1]", "KEYS[2]", "ARGV[1]")


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

    @property
    def field(self) -> str:
        return f"share:{self.channel}:{self.lang}"

    def position(self, source: int) -> str:
        """The field of the cut's hash holding where the walk of ``source`` stands."""
        return f"position:{self.channel}:{self.lang}:{source}"


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
        pipe.zcard(keys.by_channel(channel))
        for key in by_lang.values():
            pipe.zcard(key)
        sizes = await pipe.execute()
    channel_size, lang_size = sizes[0], dict(zip(by_lang, sizes[1:], strict=True))
    common: list[list[str]] = []
    if areas:
        common.append([keys.by_area(a) for a in [*areas, ALL]])
    if topics is not None:
        common.append([keys.by_topic(t) for t in [*topics, ALL]])
    if within is not None:
        common.append([within])
    shares = []
    for lang, langs in sorted(groups.items()):
        lang_sets = [by_lang[w] for w in langs]
        if channel_size <= sum(lang_size[w] for w in langs):
            sources, checks = [keys.by_channel(channel)], [lang_sets, *common]
        else:
            sources, checks = lang_sets, [[keys.by_channel(channel)], *common]
        seen = keys.audience(notice_id, channel, lang)
        shares.append(Share(channel, lang, stream, size, sources, checks, seen, f"{seen}:carry"))
    return shares


class Cutter:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._cut = redis.register_script(_CUT)
        self._finish = redis.register_script(_FINISH)

    def record(self, pipe: Any, notice_id: str, shares: list[Share]) -> None:
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
        cut = await self._walk(notice_id, kind, shares)
        short = await self.check(notice_id, shares)
        if short:  # walk the channel's audience again: the seen sets keep anyone from a repeat
            event(log, "cut.mismatch", logging.WARNING, notice=notice_id, **short)
            again = [share for share in shares if share.channel in short]
            async with self.redis.pipeline(transaction=True) as pipe:
                for share in again:
                    for source in range(len(share.sources)):
                        pipe.hset(self.keys.cut_counter(notice_id), share.position(source), "-")
                await pipe.execute()
            cut += await self._walk(notice_id, kind, again)
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

    async def _walk(self, notice_id: str, kind: str, shares: list[Share]) -> int:
        cut, most = 0, 1
        active = [(share, 0) for share in shares]  # with the source being walked
        while active:
            async with self.redis.pipeline(transaction=False) as pipe:
                for share, i in active:
                    await self._call(pipe, notice_id, kind, share, i, most)
                replies = await pipe.execute()
            following = []
            for (share, i), (batches, finished) in zip(active, replies, strict=True):
                cut += int(batches)
                if not finished:
                    following.append((share, i))
                elif i + 1 < len(share.sources):
                    following.append((share, i + 1))
            active, most = following, min(most * 2, 16)
        return cut

    async def _call(
        self, pipe: Any, notice_id: str, kind: str, share: Share, source: int, most: int
    ) -> None:
        k = self.keys
        checks = [key for check in share.checks for key in check]
        await self._cut(
            keys=[
                share.sources[source],
                share.seen,
                share.carry,
                share.stream,
                k.cut_counter(notice_id),
                k.progress(notice_id),
                *checks,
            ],
            args=[
                notice_id,
                share.channel,
                share.lang,
                kind,
                share.size,
                most,
                share.position(source),
                "1" if source == len(share.sources) - 1 else "0",
                len(share.checks),
                *(len(check) for check in share.checks),
            ],
            client=pipe,
        )

    async def finish(self, notice_id: str, shares: list[Share]) -> None:
        """Every share is cut: drop the scratch sets, and settle the notice if its
        batches were all delivered while it was being cut."""
        k = self.keys
        scratch = [key for s in shares for key in (s.seen, s.carry)]
        await self._finish(
            keys=[
                k.progress(notice_id),
                k.notice(notice_id),
                *scratch,
                k.drill_audience(notice_id),
            ],
            args=[time.time(), *sorted({s.channel for s in shares})],
        )
