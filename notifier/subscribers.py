"""The subscriber store (an index of sorted sets per channel, area, topic and language, in
the order of the ids on any copy of the data) and audiences."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from notifier import channel_registry
from notifier.config import Settings
from notifier.crypto import Sealer
from notifier.csv_import import ImportRefused
from notifier.keys import ALL, Keys
from notifier.models import Subscriber, field_errors
from notifier.recipients import Recipients
from notifier.states import Scripts
from notifier.streams import as_text

CSV_HEADER = ["channel", "address", "name", "areas", "topics", "language"]


@dataclass(frozen=True)
class Audience:
    """Subscriber ids of one channel, grouped by the language they read."""

    by_language: dict[str, set[str]]

    @property
    def size(self) -> int:
        return sum(len(ids) for ids in self.by_language.values())


class SubscriberStore:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self._lookup_keys = [_lookup_key(settings.secret_key)]
        if settings.secret_key_previous is not None:
            self._lookup_keys.append(_lookup_key(settings.secret_key_previous))
        self.sealer = Sealer(settings.secret_key, settings.secret_key_previous)
        self.scripts = Scripts(redis)

    def lookup_hash(self, channel: str, address: str, key: int = 0) -> str:
        """A keyed hash of the address: finds a subscriber without storing the address as a
        key. ``key`` 1 is the previous NOTIFIER_SECRET_KEY's, during a rotation."""
        email = channel_registry.REGISTRY[channel].address == "email"
        normal = address.strip().lower() if email else address.strip()
        return hmac.new(
            self._lookup_keys[key], f"{channel}:{normal}".encode(), hashlib.sha256
        ).hexdigest()

    def _lookup_hashes(self, channel: str, address: str) -> list[str]:
        return [self.lookup_hash(channel, address, k) for k in range(len(self._lookup_keys))]

    async def _lookup(self, subscribers: list[Subscriber]) -> list[bytes | str | None]:
        """Each one's id if the address is subscribed (by the current key's hash, else the
        previous key's while a rotation is under way)."""
        if not subscribers:
            return []
        hashes = [self._lookup_hashes(s.channel, s.address) for s in subscribers]
        flat = [h for row in hashes for h in row]
        found = iter(await self.redis.hmget(self.keys.subscriber_lookup, flat))
        return [next((f for f in [next(found) for _ in row] if f), None) for row in hashes]

    def validate(self, data: dict[str, object]) -> Subscriber:
        return Subscriber.model_validate(data, context={"ward": self.settings.ward})

    async def find(self, channel: str, address: str) -> str | None:
        found = await self.redis.hmget(
            self.keys.subscriber_lookup, self._lookup_hashes(channel, address)
        )
        return next((as_text(f) for f in found if f), None)

    async def get(self, subscriber_id: str) -> Subscriber | None:
        (found,) = await self._get_many([subscriber_id])
        return found

    async def _get_many(self, ids: list[str | None]) -> list[Subscriber | None]:
        wanted = [sid for sid in ids if sid is not None]
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscriber_id in wanted:
                pipe.hgetall(self.keys.subscriber(subscriber_id))
            rows = await pipe.execute()
        contacts = cast(
            "list[bytes | None]",
            await self.redis.hmget(self.keys.contacts, wanted) if wanted else [],
        )
        found = {
            sid: _subscriber(row, self.sealer.open_value(contact) if contact else None)
            for sid, row, contact in zip(wanted, rows, contacts, strict=True)
        }
        return [found[sid] if sid is not None else None for sid in ids]

    async def mailing_list(self, area: str) -> list[dict[str, str]]:
        """The residents registered by post in the area (or for the whole ward), each with
        the address block of their mailing copy, in a stable order."""
        postal = [n for n, s in channel_registry.REGISTRY.items() if s.address == "postal"]
        ids: set[str] = set()
        for channel in postal:
            audience = await self.audience(channel, [area], None)
            ids.update(*audience.by_language.values())
        found = await self.addresses(sorted(ids))
        return [
            {"id": sid, "address": found[sid][0], "name": found[sid][1]}
            for sid in sorted(ids)
            if sid in found
        ]

    async def addresses(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """id → (address, name) for those of ``ids`` still subscribed (one round trip)."""
        found, _ = await self.recipients(list(ids))
        return dict(zip(found.ids, zip(found.addresses, found.names, strict=True), strict=True))

    async def recipients(self, ids: list[str]) -> tuple[Recipients, list[str]]:
        """Those of ``ids`` still subscribed, with their current address, in the order
        of ``ids``; and the ids no longer subscribed. One round trip, and no object made
        per recipient: the worker asks this for every batch of 500."""
        if not ids:
            return Recipients([], [], []), []
        contacts = await _hmget(self.redis, self.keys.contacts, ids)
        if None in contacts:
            kept = [(sid, c) for sid, c in zip(ids, contacts, strict=True) if c is not None]
            gone = [sid for sid, c in zip(ids, contacts, strict=True) if c is None]
            ids, sealed = [sid for sid, _ in kept], [c for _, c in kept]
        else:
            gone, sealed = [], cast("list[bytes]", contacts)
        opened = [unpack_contact(contact) for contact in self.sealer.open_many(sealed)]
        return Recipients(ids, [a for a, _ in opened], [n for _, n in opened]), gone

    async def save(self, subscribers: list[Subscriber]) -> list[tuple[str, bool]]:
        """Store all of them in one transaction; an existing address is updated, not doubled.

        Returns (id, created) for each.
        """
        hashes = [self.lookup_hash(s.channel, s.address) for s in subscribers]
        existing = await self._lookup(subscribers)
        olds = await self._get_many([as_text(found) if found else None for found in existing])
        resting = await self._suspended(olds, existing)
        census: Counter[str] = Counter()
        results: list[tuple[str, bool]] = []
        removals: dict[str, list[str]] = defaultdict(list)  # set key → ids, as few commands
        additions: dict[str, list[str]] = defaultdict(list)  # as there are sets
        contacts: dict[FieldT, EncodableT] = {}
        lookups: dict[FieldT, EncodableT] = {}
        now = str(time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            for sub, digest, found, old in zip(subscribers, hashes, existing, olds, strict=True):
                subscriber_id = as_text(found) if found else secrets.token_hex(12)
                if old is not None:
                    for key in self._sets(old):
                        removals[key].append(subscriber_id)
                    if subscriber_id in resting:  # subscribing again lifts a suspension
                        pipe.srem(self.keys.suspended(old.channel), subscriber_id)
                    else:
                        census[choices(old)] -= 1
                census[choices(sub)] += 1
                for key in self._sets(sub):
                    additions[key].append(subscriber_id)
                pipe.hset(
                    self.keys.subscriber(subscriber_id),
                    mapping={
                        "channel": sub.channel,
                        "areas": " ".join(sub.areas),
                        "topics": " ".join(sub.topics),
                        "language": sub.language,
                        "updated": now,
                    },
                )
                contact = pack_contact(sub.address, sub.name)
                contacts[subscriber_id] = self.sealer.seal_bytes(contact)
                lookups[digest] = subscriber_id
                results.append((subscriber_id, found is None))
            for key, ids in removals.items():
                pipe.zrem(key, *ids)
            for key, ids in additions.items():
                pipe.zadd(key, dict.fromkeys(ids, 0))
            if contacts:
                pipe.hset(self.keys.contacts, mapping=contacts)
                pipe.hset(self.keys.subscriber_lookup, mapping=lookups)
            for signature, change in census.items():
                if change:
                    pipe.hincrby(self.keys.census, signature, change)
            await pipe.execute()
        return results

    async def _suspended(
        self, olds: list[Subscriber | None], existing: list[bytes | str | None]
    ) -> set[str]:
        """The ids among ``existing`` subscribers whose address is suspended."""
        found = [(as_text(f), o.channel) for f, o in zip(existing, olds, strict=True) if f and o]
        if not found:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid, channel in found:
                pipe.sismember(self.keys.suspended(channel), sid)
            flags = await pipe.execute()
        return {sid for (sid, _), flag in zip(found, flags, strict=True) if flag}

    async def suspend(self, channel: str, ids: list[str]) -> int:
        """Stop sending to these subscribers (their address keeps failing), keeping their
        data; returns how many were newly suspended."""
        k = self.keys
        languages = self.settings.ward.language_codes
        sets = [k.by_channel_language(channel, lang) for lang in languages]
        done = await self.scripts.run(
            "suspend",
            suspended_key=k.suspended(channel),
            index_key=k.by_channel(channel),
            census_key=k.census,
            set_and_hash_keys=[*sets, *map(k.subscriber, ids)],
            language_count=len(languages),
            languages_and_ids=[*languages, *ids],
        )
        return int(done)

    async def audience_count(
        self, channel: str, areas: list[str], topics: list[str] | None, languages: list[str]
    ) -> int:
        """How many on ``channel`` a notice for ``areas`` ([] = whole ward) and ``topics``
        (None = regardless of topic choices) reaches, counted from the census rather than
        the index: what a cut of the index must come to."""
        census = cast("dict[bytes, bytes]", await self.redis.hgetall(self.keys.census))
        wanted_areas, wanted_topics, readers = set(areas), set(topics or ()), set(languages)
        total = 0
        for signature, count in census.items():
            on, chosen_areas, chosen_topics, language = as_text(signature).split("|")
            if on != channel or language not in readers:
                continue
            if wanted_areas and chosen_areas and wanted_areas.isdisjoint(chosen_areas.split()):
                continue
            if topics is not None and chosen_topics:
                if wanted_topics.isdisjoint(chosen_topics.split()):
                    continue
            total += int(count)
        return total

    async def unsubscribe_tokens(self, ids: list[str]) -> dict[str, str]:
        """Each subscriber's opaque unsubscribe token, made on first need."""
        k = self.keys
        found = await self.redis.hmget(k.unsubscribe_tokens_by_id, ids) if ids else []
        tokens = {sid: as_text(t) for sid, t in zip(ids, found, strict=True) if t}
        missing = [sid for sid in ids if sid not in tokens]
        if missing:
            fresh = {sid: secrets.token_urlsafe(24) for sid in missing}
            async with self.redis.pipeline(transaction=True) as pipe:
                for sid, token in fresh.items():
                    pipe.hsetnx(k.unsubscribe_tokens_by_id, sid, token)
                await pipe.execute()
            # another worker may have been first: read back what stands
            stored = await self.redis.hmget(k.unsubscribe_tokens_by_id, missing)
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid, standing in zip(missing, stored, strict=True):
                    tokens[sid] = as_text(standing or fresh[sid])
                    pipe.hset(k.unsubscribe_tokens, tokens[sid], sid)
                await pipe.execute()
        return tokens

    async def by_unsubscribe_token(self, token: str) -> str | None:
        found = await self.redis.hget(self.keys.unsubscribe_tokens, token)
        return as_text(found) if found else None

    async def delete(self, subscriber_id: str) -> bool:
        old = await self.get(subscriber_id)
        if old is None:
            return False
        token = await self.redis.hget(self.keys.unsubscribe_tokens_by_id, subscriber_id)
        resting = await self._suspended([old], [subscriber_id])
        async with self.redis.pipeline(transaction=True) as pipe:
            if not resting:
                pipe.hincrby(self.keys.census, choices(old), -1)
            if token:
                pipe.hdel(self.keys.unsubscribe_tokens, token)
                pipe.hdel(self.keys.unsubscribe_tokens_by_id, subscriber_id)
            pipe.hdel(self.keys.bounces, subscriber_id)
            pipe.srem(self.keys.suspended(old.channel), subscriber_id)
            self._unindex(pipe, subscriber_id, old)
            pipe.delete(self.keys.subscriber(subscriber_id))
            pipe.hdel(self.keys.contacts, subscriber_id)
            pipe.hdel(self.keys.subscriber_lookup, *self._lookup_hashes(old.channel, old.address))
            await pipe.execute()
        return True

    async def export(self, chunk: int = 500) -> AsyncIterator[list[Subscriber]]:
        """Every subscriber, opened, a chunk at a time (`notifier subscribers export`)."""
        cursor = 0
        while True:
            cursor, rows = await self.redis.hscan(self.keys.contacts, cursor, count=chunk)
            found = await self._get_many([as_text(i) for i in rows])
            yield [s for s in found if s is not None]
            if cursor == 0:
                return

    async def reseal(self, chunk: int = 500) -> int:
        """Seal every subscriber's contact under the current NOTIFIER_SECRET_KEY and index it
        by the current key's hash (`notifier rotate-key`). Safe to run again; returns how
        many subscribers it went through."""
        k, done, cursor = self.keys, 0, 0
        while True:
            cursor, found = await self.redis.hscan(k.contacts, cursor, count=chunk)
            rows = cast("dict[bytes, bytes]", found)
            if rows:
                ids = [as_text(i) for i in rows]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for subscriber_id in ids:
                        pipe.hget(k.subscriber(subscriber_id), "channel")
                    channels = await pipe.execute()
                opened = self.sealer.open_many(list(rows.values()))
                async with self.redis.pipeline(transaction=True) as pipe:
                    for sid, channel, contact in zip(ids, channels, opened, strict=True):
                        if channel is None:
                            continue
                        address, _ = unpack_contact(contact)
                        new, *old = self._lookup_hashes(as_text(channel), address)
                        pipe.hset(k.contacts, sid, self.sealer.seal_bytes(contact))
                        pipe.hset(k.subscriber_lookup, new, sid)
                        if old and old[0] != new:
                            pipe.hdel(k.subscriber_lookup, old[0])
                        done += 1
                    await pipe.execute()
            if cursor == 0:
                return done

    def _sets(self, sub: Subscriber) -> list[str]:
        k = self.keys
        return [
            k.by_channel(sub.channel),
            *(k.by_area(a) for a in (sub.areas or [ALL])),
            *(k.by_topic(t) for t in (sub.topics or [ALL])),
            k.by_language(sub.language),
            k.by_channel_language(sub.channel, sub.language),
        ]

    def _unindex(self, pipe: Pipeline, subscriber_id: str, sub: Subscriber) -> None:
        for key in self._sets(sub):
            pipe.zrem(key, subscriber_id)

    def index_keys(self) -> list[str]:
        """Every key of the subscriber index."""
        k, ward = self.keys, self.settings.ward
        return [
            *(k.by_channel(c) for c in channel_registry.subscribed()),
            *(k.by_area(a) for a in [*ward.area_codes, ALL]),
            *(k.by_topic(t) for t in [*ward.topic_codes, ALL]),
            *(k.by_language(lang) for lang in ward.language_codes),
            *(
                k.by_channel_language(c, lang)
                for c in channel_registry.subscribed()
                for lang in ward.language_codes
            ),
        ]

    async def upgrade_index(self) -> int:
        """Move an index kept as plain sets (before it was ordered) into the sorted sets,
        a key at a time, each move atomic; then build the by-channel-and-language sets if
        the index is older than they are. Safe to run again. Returns the keys moved.

        Every process runs this before it writes a subscriber: from then on the writes
        keep the new sets. Until they are built, notices are cut from the channel and
        language sets as before."""
        k = self.keys
        moved = 0
        for key in self.index_keys():
            moved += int(
                await self.scripts.run(
                    "index_upgrade", before_key=k.index_before(key), index_key=key
                )
            )
        if moved and not await self.redis.exists(k.census):
            await self.recount()
        if not await self.redis.exists(k.reach_built):
            async with self.redis.pipeline(transaction=True) as pipe:  # all of them at once
                for channel in channel_registry.subscribed():
                    for lang in self.settings.ward.language_codes:
                        pipe.zinterstore(
                            k.by_channel_language(channel, lang),
                            {k.by_channel(channel): 1, k.by_language(lang): 0},
                        )
                pipe.set(k.reach_built, "1")
                await pipe.execute()
        return moved

    async def recount(self, chunk: int = 500) -> int:
        """Count the census again from the subscribers themselves (an index from before the
        census, or one an operator repaired by hand); returns how many were counted."""
        k, census, cursor = self.keys, Counter[str](), 0
        while True:
            cursor, found = await self.redis.hscan(k.contacts, cursor, count=chunk)
            ids = [as_text(i) for i in cast("dict[bytes, bytes]", found)]
            olds = await self._get_many(list(ids))
            resting = await self._suspended(olds, list(ids))
            for sid, old in zip(ids, olds, strict=True):
                if old is not None and sid not in resting:
                    census[choices(old)] += 1
            if cursor == 0:
                break
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.census)
            if census:
                pipe.hset(k.census, mapping=cast("dict[FieldT, EncodableT]", dict(census)))
            await pipe.execute()
        return sum(census.values())

    async def audience(self, channel: str, areas: list[str], topics: list[str] | None) -> Audience:
        """Who on ``channel`` gets a notice for ``areas`` ([] = whole ward) and ``topics``
        (None = regardless of topic choices), by language: channel ∩ (chosen areas ∪ whole
        ward) ∩ (chosen topics ∪ every topic) ∩ language, inside Redis in one transaction.
        (The dispatcher cuts the same arithmetic into batches as it goes: notifier/cutting.py.)"""
        k = self.keys
        languages = self.settings.ward.language_codes
        scratch = k.scratch(secrets.token_hex(8))
        in_areas, in_topics = f"{scratch}:areas", f"{scratch}:topics"
        sets = [k.by_channel(channel)]
        async with self.redis.pipeline(transaction=True) as pipe:
            if areas:
                pipe.zunionstore(in_areas, [k.by_area(a) for a in [*areas, ALL]])
                sets.append(in_areas)
            if topics is not None:
                pipe.zunionstore(in_topics, [k.by_topic(t) for t in [*topics, ALL]])
                sets.append(in_topics)
            for lang in languages:
                pipe.zinter([*sets, k.by_language(lang)])
            pipe.delete(in_areas, in_topics)
            replies = await pipe.execute()
        members = replies[len(sets) - 1 : len(sets) - 1 + len(languages)]
        return Audience(
            {
                lang: {as_text(m) for m in found}
                for lang, found in zip(languages, members, strict=True)
                if found
            }
        )

    async def audience_size(self, channel: str, areas: list[str]) -> int:
        """How many on ``channel`` an alert for ``areas`` ([] = whole ward) reaches."""
        k = self.keys
        if not areas:
            return int(await self.redis.zcard(k.by_channel(channel)))
        scratch = f"{k.scratch(secrets.token_hex(8))}:areas"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zunionstore(scratch, [k.by_area(a) for a in [*areas, ALL]])
            pipe.zintercard(2, [k.by_channel(channel), scratch])
            pipe.delete(scratch)
            _, size, _ = await pipe.execute()
        return int(size)

    async def breakdown(self) -> dict[str, dict[str, int]]:
        """How many subscribers each channel, area, topic and language has (no one's data)."""
        ward = self.settings.ward
        groups = {
            "channel": [(c, self.keys.by_channel(c)) for c in channel_registry.subscribed()],
            "area": [(a, self.keys.by_area(a)) for a in [*ward.area_codes, ALL]],
            "topic": [(t, self.keys.by_topic(t)) for t in [*ward.topic_codes, ALL]],
            "language": [(lang, self.keys.by_language(lang)) for lang in ward.language_codes],
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            for members in groups.values():
                for _, key in members:
                    pipe.zcard(key)
            sizes = iter(await pipe.execute())
        return {
            group: {code: int(next(sizes)) for code, _ in members}
            for group, members in groups.items()
        }


def choices(sub: Subscriber) -> str:
    """A subscriber's census field; areas and topics sorted, so that the census has one
    field per set of choices (at most a few tens of thousands) whatever order they came in."""
    areas, topics = " ".join(sorted(sub.areas)), " ".join(sorted(sub.topics))
    return f"{sub.channel}|{areas}|{topics}|{sub.language}"


SEPARATOR = "\x1f"  # the unit separator: validation keeps control characters out of both


async def _hmget(redis: Redis, key: str, fields: list[str]) -> list[bytes | None]:
    """HMGET, its command packed here in one join (redis-py packs one argument at a time,
    in Python, and a LINE batch asks for 500)."""
    args = [b"HMGET", key.encode(), *(f.encode() for f in fields)]
    packed = b"".join([b"*%d\r\n" % len(args), *(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)])
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(packed)
        return cast("list[bytes | None]", await conn.read_response())
    except BaseException:  # an answer may be left unread: the connection can't be reused
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


def _lookup_key(secret: SecretStr | None) -> bytes:
    return ("notifier-lookup:" + (secret.get_secret_value() if secret else "")).encode()


def pack_contact(address: str, name: str) -> str:
    return f"{address}{SEPARATOR}{name}"


def unpack_contact(packed: bytes | str) -> tuple[str, str]:
    """(address, name): one split, cheap enough for 500 recipients a batch."""
    address, _, name = as_text(packed).partition(SEPARATOR)
    return address, name


def _subscriber(
    data: Mapping[bytes | str, bytes | str], contact: bytes | str | None
) -> Subscriber | None:
    """A stored subscriber as read back (it was validated when it was saved)."""
    if not data or contact is None:
        return None
    fields = {as_text(k): as_text(v) for k, v in data.items()}
    address, name = unpack_contact(contact)
    return Subscriber.model_construct(
        channel=fields["channel"],
        address=address,
        name=name,
        areas=fields.get("areas", "").split(),
        topics=fields.get("topics", "").split(),
        language=fields.get("language", "ja"),
    )


def parse_csv(text: str, store: SubscriberStore) -> list[Subscriber]:
    """Check every row; raise ImportRefused naming each bad line, else return them all."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != CSV_HEADER:
        raise ImportRefused([f"line 1: the header must be {','.join(CSV_HEADER)}"])
    errors: list[str] = []
    subscribers: list[Subscriber] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(CSV_HEADER):
            errors.append(f"line {number}: {len(row)} columns, expected {len(CSV_HEADER)}")
            continue
        data = dict(zip(CSV_HEADER, (cell.strip() for cell in row), strict=True))
        try:
            sub = store.validate(
                {
                    **data,
                    "areas": data["areas"].split(),
                    "topics": data["topics"].split(),
                    "language": data["language"] or "ja",
                }
            )
        except ValidationError as e:
            errors.extend(f"line {number}: {f}: {m}" for f, m in field_errors(e).items())
            continue
        digest = store.lookup_hash(sub.channel, sub.address)
        if digest in seen:
            errors.append(f"line {number}: the same {sub.channel} address as line {seen[digest]}")
            continue
        seen[digest] = number
        subscribers.append(sub)
    if errors:
        raise ImportRefused(errors)
    return subscribers
