"""Personal data at rest: sealed under NOTIFIER_SECRET_KEY, found by keyed hash."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from notifier.crypto import Sealer
from notifier.runtime import Runtime


def test_sealed_text_opens_only_with_its_key() -> None:
    sealer = Sealer(SecretStr("one key"))
    sealed = sealer.seal("hanako@example.jp")
    assert "hanako" not in sealed and sealed != sealer.seal("hanako@example.jp")  # fresh nonce
    assert sealer.open(sealed) == "hanako@example.jp"
    with pytest.raises(ValueError, match="another NOTIFIER_SECRET_KEY"):
        Sealer(SecretStr("another key")).open(sealed)
    with pytest.raises(ValueError, match="does not have"):
        Sealer(None).open(sealed)


def test_opening_many_is_opening_each() -> None:
    sealer = Sealer(SecretStr("one key"))
    texts = ["U" + "a" * 32, "hanako@example.jp", "練馬区豊玉北6-12-1\x1f練馬花子", ""]
    stored = [sealer.seal(t).encode() for t in texts] + [Sealer(None).seal("plain").encode()]
    assert sealer.open_many(stored) == [*texts, "plain"]
    with pytest.raises(ValueError, match="another NOTIFIER_SECRET_KEY"):
        Sealer(SecretStr("another key")).open_many(stored[:1])
    with pytest.raises(ValueError, match="does not have"):
        Sealer(None).open_many(stored[:1])


def test_sealed_as_bytes_opens_as_the_text_form_does_and_during_a_rotation() -> None:
    old, new = SecretStr("the old key"), SecretStr("the new key")
    texts = ["U" + "b" * 32, "練馬区豊玉北6-12-1\x1f練馬花子"]
    sealer = Sealer(old)
    raw = [sealer.seal_bytes(t) for t in texts]
    assert all(b"b" * 32 not in r and "練馬".encode() not in r for r in raw)
    assert raw[0] != sealer.seal_bytes(texts[0])  # a fresh nonce each time
    assert sealer.open_many(raw) == texts == [sealer.open_value(r) for r in raw]
    mixed = [raw[0], sealer.seal(texts[1]).encode(), Sealer(None).seal_bytes("plain")]
    assert sealer.open_many(mixed) == [texts[0], texts[1], "plain"]
    rotating = Sealer(new, previous=old)  # `notifier rotate-key` between the two
    assert rotating.open_many([raw[0], rotating.seal_bytes(texts[1])]) == texts
    with pytest.raises(ValueError, match="another NOTIFIER_SECRET_KEY"):
        Sealer(new).open_many(raw)
    with pytest.raises(ValueError, match="does not have"):
        Sealer(None).open_many(raw)


async def test_no_address_or_name_is_stored_in_clear(runtime: Runtime) -> None:
    store = runtime.subscribers
    people = [
        {"channel": "email", "address": "hanako@example.jp", "name": "練馬花子"},
        {"channel": "line", "address": "U" + "a" * 32},
        {"channel": "print", "address": "練馬区豊玉北6-12-1", "name": "大泉太郎"},
    ]
    saved = await store.save([store.validate(p) for p in people])
    dump = b""
    async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}*"):
        kind = await runtime.redis.type(key)
        if kind == b"hash":
            dump += b"".join(k + v for k, v in (await runtime.redis.hgetall(key)).items())
        elif kind == b"set":
            dump += b"".join(await runtime.redis.smembers(key))
        elif kind == b"zset":
            dump += b"".join(await runtime.redis.zrange(key, 0, -1))
    for value in ("hanako", "練馬花子", "a" * 32, "豊玉北", "大泉太郎"):
        assert value.encode() not in dump
    (sid, _), *_ = saved
    sub = await store.get(sid)
    assert sub is not None and sub.address == "hanako@example.jp" and sub.name == "練馬花子"
    assert await store.find("email", "HANAKO@example.jp") == sid
