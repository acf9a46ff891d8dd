"""The subscriber store (Redis sets per channel, area, topic and language) and audiences."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from notifier.config import Settings
from notifier.keys import ALL, Keys
from notifier.models import Subscriber, field_errors
from notifier.streams import as_text

CSV_HEADER = ["channel", "address", "name", "areas", "topics", "language"]


class ImportError_(ValueError):
    """A CSV file with bad rows; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} problem(s); nothing was imported")
        self.errors = errors


@dataclass(frozen=True)
class Audience:
    """Subscriber ids of one channel, grouped by the language they read."""

    by_language: dict[str, set[str]]

    @property
    def size(self) -> int:
        return sum(len(ids) for ids in self.by_language.values())


def select(
    on_channel: set[str],
    in_areas: set[str],
    in_topics: set[str],
    by_language: dict[str, set[str]],
) -> Audience:
    """Pure audience arithmetic: channel ∩ areas ∩ topics, split by language.

    ``in_areas`` and ``in_topics`` already include the subscribers who chose nothing
    (the whole ward, every topic).
    """
    chosen = on_channel & in_areas & in_topics
    groups = {lang: chosen & ids for lang, ids in by_language.items()}
    return Audience({lang: ids for lang, ids in groups.items() if ids})


class SubscriberStore:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        self._lookup_key = ("notifier-lookup:" + secret).encode()

    def lookup_hash(self, channel: str, address: str) -> str:
        """A keyed hash of the address: finds a subscriber without storing the address as a key."""
        normal = address.strip().lower() if channel == "email" else address.strip()
        return hmac.new(
            self._lookup_key, f"{channel}:{normal}".encode(), hashlib.sha256
        ).hexdigest()

    def validate(self, data: dict[str, object]) -> Subscriber:
        return Subscriber.model_validate(data, context={"ward": self.settings.ward})

    async def find(self, channel: str, address: str) -> str | None:
        found = await self.redis.hget(
            self.keys.subscriber_lookup, self.lookup_hash(channel, address)
        )
        return as_text(found) if found else None

    async def get(self, subscriber_id: str) -> Subscriber | None:
        return _subscriber(await self.redis.hgetall(self.keys.subscriber(subscriber_id)))

    async def _get_many(self, ids: list[str | None]) -> list[Subscriber | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscriber_id in ids:
                if subscriber_id is not None:
                    pipe.hgetall(self.keys.subscriber(subscriber_id))
            rows = iter(await pipe.execute())
        return [_subscriber(next(rows)) if sid is not None else None for sid in ids]

    async def addresses(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """id → (address, name) for those of ``ids`` still subscribed."""
        ids = list(ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscriber_id in ids:
                pipe.hmget(self.keys.subscriber(subscriber_id), "address", "name")
            rows = await pipe.execute()
        return {
            subscriber_id: (address.decode(), (name or b"").decode())
            for subscriber_id, (address, name) in zip(ids, rows, strict=True)
            if address is not None
        }

    async def save(self, subscribers: list[Subscriber]) -> list[tuple[str, bool]]:
        """Store all of them in one transaction; an existing address is updated, not doubled.

        Returns (id, created) for each.
        """
        hashes = [self.lookup_hash(s.channel, s.address) for s in subscribers]
        existing = await self.redis.hmget(self.keys.subscriber_lookup, hashes) if hashes else []
        olds = await self._get_many([as_text(found) if found else None for found in existing])
        results: list[tuple[str, bool]] = []
        async with self.redis.pipeline(transaction=True) as pipe:
            for sub, digest, found, old in zip(subscribers, hashes, existing, olds, strict=True):
                subscriber_id = as_text(found) if found else secrets.token_hex(12)
                if old is not None:
                    self._unindex(pipe, subscriber_id, old)
                pipe.hset(
                    self.keys.subscriber(subscriber_id),
                    mapping={
                        "channel": sub.channel,
                        "address": sub.address,
                        "name": sub.name,
                        "areas": " ".join(sub.areas),
                        "topics": " ".join(sub.topics),
                        "language": sub.language,
                        "updated": str(time.time()),
                    },
                )
                self._index(pipe, subscriber_id, sub)
                pipe.hset(self.keys.subscriber_lookup, digest, subscriber_id)
                results.append((subscriber_id, found is None))
            await pipe.execute()
        return results

    async def delete(self, subscriber_id: str) -> bool:
        old = await self.get(subscriber_id)
        if old is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            self._unindex(pipe, subscriber_id, old)
            pipe.delete(self.keys.subscriber(subscriber_id))
            pipe.hdel(self.keys.subscriber_lookup, self.lookup_hash(old.channel, old.address))
            await pipe.execute()
        return True

    def _sets(self, sub: Subscriber) -> list[str]:
        k = self.keys
        return [
            k.by_channel(sub.channel),
            *(k.by_area(a) for a in (sub.areas or [ALL])),
            *(k.by_topic(t) for t in (sub.topics or [ALL])),
            k.by_language(sub.language),
        ]

    def _index(self, pipe: Pipeline, subscriber_id: str, sub: Subscriber) -> None:
        for key in self._sets(sub):
            pipe.sadd(key, subscriber_id)

    def _unindex(self, pipe: Pipeline, subscriber_id: str, sub: Subscriber) -> None:
        for key in self._sets(sub):
            pipe.srem(key, subscriber_id)

    async def audience(self, channel: str, areas: list[str], topics: list[str] | None) -> Audience:
        """Who on ``channel`` gets a notice for ``areas`` ([] = whole ward) and ``topics``
        (None = regardless of topic choices)."""
        k = self.keys
        languages = self.settings.ward.language_codes
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(k.by_channel(channel))
            pipe.sunion([k.by_area(a) for a in [*areas, ALL]])
            pipe.sunion([k.by_topic(t) for t in [*(topics or []), ALL]])
            for lang in languages:
                pipe.smembers(k.by_language(lang))
            on_channel, in_areas, in_topics, *langs = await pipe.execute()
        if not areas:
            in_areas = on_channel
        if topics is None:
            in_topics = on_channel
        decoded = [{m.decode() for m in s} for s in (on_channel, in_areas, in_topics, *langs)]
        return select(
            decoded[0], decoded[1], decoded[2], dict(zip(languages, decoded[3:], strict=True))
        )

    async def counts(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in ("line", "email", "print"):
                pipe.scard(self.keys.by_channel(channel))
            values = await pipe.execute()
        return dict(zip(("line", "email", "print"), values, strict=True))


def _subscriber(data: Mapping[bytes | str, bytes | str]) -> Subscriber | None:
    """A stored subscriber as read back (it was validated when it was saved)."""
    if not data:
        return None
    fields = {as_text(k): as_text(v) for k, v in data.items()}
    return Subscriber.model_construct(
        channel=fields["channel"],
        address=fields["address"],
        name=fields.get("name", ""),
        areas=fields.get("areas", "").split(),
        topics=fields.get("topics", "").split(),
        language=fields.get("language", "ja"),
    )


def parse_csv(text: str, store: SubscriberStore) -> list[Subscriber]:
    """Check every row; raise ImportError_ naming each bad line, else return them all."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != CSV_HEADER:
        raise ImportError_([f"line 1: the header must be {','.join(CSV_HEADER)}"])
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
        raise ImportError_(errors)
    return subscribers
