"""Cutting a notice's audience into delivery batches, straight from the subscriber index.

A (channel, language) share of a notice goes to channel ∩ (its areas ∪ whole ward) ∩
(its topics ∪ every topic) ∩ the readers' languages. Computing that set first (a
SINTERSTORE of a million members) would keep the first batch waiting for a second, so a
Lua script walks the smallest of those sets with SSCAN, keeps the members that are in
the others, and cuts them into batches as it goes: the first batch is on its stream a
millisecond after the notice is dispatched.

Each call of the script is atomic and records together its cursor, the batches it cut,
the ids it took (the ``seen`` set, so an id SSCAN returns twice goes out once) and the
progress counters; members short of a full batch wait in a ``carry`` set for the next
call. A dispatcher that dies between calls is taken over where it stopped. While a
channel's audience is still being cut its progress holds ``cutting``, so the notice is
not done before the last batch exists.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.asyncio import Redis

from notifier.keys import ALL, Keys

SCANS_PER_CALL = (
    16  # SSCAN steps (about 500 members each) one call may take: Redis stays responsive
)


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
#       7 cursor field, 8 last source of the share ('1'/'0'), 9 number of checks,
#       10… the number of sets in each check
_CUT = (
    """
local cursor = redis.call('HGET', KEYS[5], ARGV[7]) or '0'
if cursor == 'done' then return {0, 1} end
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
    if type(part) == 'table' then  -- SMISMEMBER's answers; SADD's count is not wanted
      for j = 1, #part do found[i + j - 1] = part[j] == 1 end
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
      local member_of = flags('SMISMEMBER', key, members)
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
local batch = redis.call('SPOP', KEYS[3], size)
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
local scans = 0
while cursor ~= '0' or scans == 0 do
  if #batch >= size then emit() end
  if cut >= most or scans >= """
    + str(SCANS_PER_CALL)
    + """ then break end
  local reply = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', 500)
  cursor, scans = reply[1], scans + 1
  for _, member in ipairs(wanted(reply[2])) do
    batch[#batch + 1] = member
    if #batch == size then emit() end
  end
end
local finished = cursor == '0' and scans > 0
if finished and ARGV[8] == '1' and #batch > 0 then emit() end
if #batch > 0 then redis.call('SADD', KEYS[3], unpack(batch)) end
redis.call('HSET', KEYS[5], ARGV[7], finished and 'done' or cursor)
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
        pipe.scard(keys.by_channel(channel))
        for key in by_lang.values():
            pipe.scard(key)
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
        await self.finish(notice_id, shares)
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
                f"cursor:{share.channel}:{share.lang}:{source}",
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
