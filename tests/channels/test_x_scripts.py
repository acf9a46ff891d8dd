"""X's window scripts on their own (notifier/lua/x_reserve.lua, x_block.lua): room for a
thread all at once or not at all, and X's "no posts until" kept at the later time."""

from __future__ import annotations

import time

from notifier.runtime import Runtime
from notifier.states import Scripts
from notifier.streams import as_text

DAY, QUARTER = 24 * 3600, 15 * 60


async def reserve(
    runtime: Runtime, posts: list[str], now: float, allowed: int = 3, reserve: int = 0
) -> tuple[str, float]:
    """x_reserve with a 15-minute window of ``allowed`` posts and a 24-hour one of ten."""
    k = runtime.keys
    why, wait = await Scripts(runtime.redis).run(
        "x_reserve",
        posts_key=k.x_posts,
        blocked_key=k.x_blocked,
        said_key=k.x_said,
        now=repr(now),
        seconds_15min=QUARTER,
        allowed_15min=allowed,
        seconds_24h=DAY,
        allowed_24h=10,
        alert_reserve=reserve,
        posts=posts,
    )
    return as_text(why), float(as_text(wait))


async def posts(runtime: Runtime) -> dict[str, float]:
    found = await runtime.redis.zrange(runtime.keys.x_posts, 0, -1, withscores=True)
    return {as_text(member): score for member, score in found}


async def test_a_thread_has_room_for_all_its_posts_or_none(runtime: Runtime) -> None:
    now = time.time()
    await runtime.redis.zadd(runtime.keys.x_posts, {"a:0": now - 600, "a:1": now - 300})
    # two more do not fit a window of three: none is reserved, and room comes when the
    # oldest has left the window
    why, wait = await reserve(runtime, ["b:0", "b:1"], now)
    assert why == "15min" and abs(wait - 300) < 0.01
    assert set(await posts(runtime)) == {"a:0", "a:1"}
    # one fits: reserved at now, and the set expires a minute after a day
    assert await reserve(runtime, ["b:0"], now) == ("ok", 0.0)
    assert (await posts(runtime))["b:0"] == now
    assert DAY < await runtime.redis.ttl(runtime.keys.x_posts) <= DAY + 60
    # a day later the window's posts have left it and both fit
    assert await reserve(runtime, ["c:0", "c:1"], now + DAY + 1) == ("ok", 0.0)
    assert set(await posts(runtime)) == {"c:0", "c:1"}


async def test_a_thread_tried_again_is_not_held_by_its_own_reservations(
    runtime: Runtime,
) -> None:
    now = time.time()
    assert await reserve(runtime, ["t:0", "t:1", "t:2"], now) == ("ok", 0.0)
    # the same thread, a second later: its three reservations are its own, not others'
    assert await reserve(runtime, ["t:0", "t:1", "t:2"], now + 1) == ("ok", 0.0)
    assert await posts(runtime) == dict.fromkeys(["t:0", "t:1", "t:2"], now + 1)
    # a longer one that does not fit gives back what it held, at the times it held them
    why, _ = await reserve(runtime, ["t:0", "t:1", "t:2", "t:3"], now + 2)
    assert why == "15min"
    assert await posts(runtime) == dict.fromkeys(["t:0", "t:1", "t:2"], now + 1)


async def test_what_x_said_remains_holds_less_the_posts_made_here_since(
    runtime: Runtime,
) -> None:
    now = time.time()
    said = f"3|{now - 10!r}|{int(now) + 500}"  # 3 left when X answered, ten seconds ago
    await runtime.redis.hset(runtime.keys.x_said, "15min", said)
    await runtime.redis.zadd(runtime.keys.x_posts, {"a:0": now - 5})  # one made since
    why, wait = await reserve(runtime, ["b:0", "b:1", "b:2"], now, allowed=10)
    assert why == "x" and abs(wait - (int(now) + 500 - now)) < 0.01
    # a routine notice leaves the alert reserve of what X said remains
    why, _ = await reserve(runtime, ["c:0", "c:1"], now, allowed=10, reserve=1)
    assert why == "x"
    assert await reserve(runtime, ["b:0", "b:1"], now, allowed=10) == ("ok", 0.0)
    assert set(await posts(runtime)) == {"a:0", "b:0", "b:1"}


async def test_x_blocked_keeps_the_later_time_and_expires_then(runtime: Runtime) -> None:
    k, scripts = runtime.keys, Scripts(runtime.redis)
    later = time.time() + 60

    async def block(until: float) -> int:
        answer = await scripts.run(
            "x_block",
            blocked_key=k.x_blocked,
            until_seconds=repr(until),
            until_ms=int(until * 1000),
        )
        return int(answer)

    assert await block(later) == 1
    assert await block(later - 30) == 0  # an earlier reset does not shorten the wait
    assert as_text(await runtime.redis.get(k.x_blocked)) == repr(later)
    assert 0 < await runtime.redis.pttl(k.x_blocked) <= 60_000
    assert await block(later + 30) == 1
    # while it holds, nothing is reserved: the wait is until that time
    why, wait = await reserve(runtime, ["a:0"], later - 50)
    assert why == "x" and abs(wait - 80) < 0.01
    assert await posts(runtime) == {}
