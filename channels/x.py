"""X (Twitter): every public notice on the ward's account, through tweepy's async client.

One notice is one post, or a numbered thread when it does not fit (a notice with a link
becomes one post that ends with the link instead). X has no idempotency key, so each
post's id is recorded as soon as X gives it: a retry, or a restarted worker, continues
the thread where it stopped. A post whose outcome is unknown (a timeout) is looked for on
the account's timeline before it is sent again.

X takes so many posts in any 15 minutes and in any 24 hours. Every worker counts the
account's posts in one sorted set; a thread reserves room for all its posts before the
first goes out, or waits until the windows have it; routine notices leave the last few
of each window to alerts, which are counted but never held by the count. When X's answer
says a window is spent (or X answers 429), every worker waits until the reset X names;
and what it says remains of each window (less what was posted here since) holds too, so
that posts another tool made on the account do not split a thread.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, cast

import aiohttp
from redis.typing import EncodableT, FieldT
from tweepy.asynchronous import AsyncClient
from tweepy.errors import Forbidden, HTTPException, TooManyRequests, TwitterServerError

from channels.base import BaseChannel, Batch, Context, Outcome, PermanentError, RetryableError
from channels.outbox import write_json
from channels.x_session import x_session
from channels.x_text import fits, mentions, same_post, thread, with_link
from notifier.channel_registry import REGISTRY
from notifier.logs import event
from notifier.models import AnyNotice
from notifier.render import Templates
from notifier.states import Scripts
from notifier.streams import as_text

if TYPE_CHECKING:
    from notifier.config import Settings

log = logging.getLogger("notifier.channels.x")

DUPLICATE = "duplicate content"
WINDOWS: dict[str, float] = {"15min": 15 * 60, "24h": 24 * 3600}
# X's rate-limit headers on a create-post answer, by window: the 15-minute one per user,
# the 24-hour ones per user and per app (each -remaining and -reset, epoch seconds)
LIMIT_HEADERS = {
    "15min": "x-rate-limit",
    "user-24h": "x-user-limit-24hour",
    "app-24h": "x-app-limit-24hour",
}
_MARK = "\ue000"  # where the body goes in a rendered post


def request_bodies(posts: list[str], ids: list[str | None]) -> list[dict[str, Any]]:
    """The create-post requests of a thread, each answering the one before."""
    bodies: list[dict[str, Any]] = []
    for i, text in enumerate(posts):
        body: dict[str, Any] = {"text": text}
        if i:
            body["reply"] = {"in_reply_to_tweet_id": ids[i - 1] or f"(post {i})"}
        bodies.append(body)
    return bodies


def windows(headers: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """What X's answer says of each window it names: (remaining, reset epoch seconds)."""
    said = {}
    for window, prefix in LIMIT_HEADERS.items():
        remaining, reset = headers.get(f"{prefix}-remaining"), headers.get(f"{prefix}-reset")
        if remaining and remaining.isdigit() and reset and reset.isdigit():
            said[window] = (int(remaining), int(reset))
    return said


def spent(headers: Mapping[str, str], refused: bool, now: float) -> tuple[str, float] | None:
    """(window, epoch seconds) when X's answer says no more posts until then: the window
    whose remaining is 0 (the latest reset of several), or, on a 429 that names none, the
    15-minute reset (a minute when X gives none)."""
    found = [(float(reset), w) for w, (left, reset) in windows(headers).items() if left == 0]
    if found:
        until, window = max(found)
        return window, until
    if not refused:
        return None
    reset = headers.get("x-rate-limit-reset", "")
    return "15min", float(reset) if reset.isdigit() else now + 60


def room(settings: Settings) -> int:
    """The most posts a routine notice may take in a window: the limit less the reserve."""
    return min(settings.x_15min_limit, settings.x_daily_limit) - settings.x_alert_reserve


def longest_thread(settings: Settings) -> int:
    """``NOTIFIER_X_MAX_POSTS``, or fewer when a window takes fewer: a thread is posted
    whole, so it must fit one."""
    return max(1, min(settings.x_max_posts, room(settings)))


class XContent(TypedDict):
    posts: list[str]  # one post, or a thread


class XChannel(BaseChannel[XContent]):
    spec = REGISTRY["x"]
    translated = False  # the ward's account posts in Japanese

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        settings = context.settings
        self.live = settings.live(self.name)
        self._scripts = Scripts(context.redis)  # x_reserve.lua, x_block.lua
        self._client: AsyncClient | None = None
        self._me: str | None = None
        if self.live:
            if room(settings) < 1:
                raise ValueError(
                    f"NOTIFIER_X_ALERT_RESERVE ({settings.x_alert_reserve}) must be below"
                    f" NOTIFIER_X_15MIN_LIMIT ({settings.x_15min_limit}) and"
                    f" NOTIFIER_X_DAILY_LIMIT ({settings.x_daily_limit}), or no routine"
                    " notice is ever posted"
                )
            secret = {
                name: getattr(settings, f"x_{name}").get_secret_value()
                for name in (
                    "consumer_key",
                    "consumer_secret",
                    "access_token",
                    "access_token_secret",
                )
            }
            # raw answers: the create-post answer's rate-limit headers are read
            self._client = AsyncClient(**secret, return_type=aiohttp.ClientResponse)
            self._client.session = x_session(settings.x_api_url, settings.x_timeout)

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> XContent:
        settings = templates.settings

        def render(body: str, link: bool = True) -> str:
            extra: dict[str, Any] = {} if link else {"url": None}
            return templates.render(
                "x/announcement.txt",
                notice,
                lang,
                body=body,
                hashtags=settings.x_hashtags,
                **extra,
            )

        def tail(link: bool) -> str:  # what follows the body: the link and the hashtags
            return render(_MARK, link).partition(_MARK)[2] if link else ""

        body = notice.body_in(lang)
        text = render(body)
        if fits(text):
            return {"posts": [text]}
        longest = longest_thread(settings)
        if not notice.url:
            return {"posts": thread(text, longest)[0]}
        post = with_link(render, body)
        if fits(post):
            return {"posts": [post]}
        # X does not see the link as one (a domain it does not know), or the title leaves
        # the body no room: a thread, the link in one post only (X charges a post with a
        # link 0.200 USD, one without 0.015): the body's own mention of it, or the line
        # after the body, which the last post keeps when the thread is cut
        link = not mentions(body, notice.url)
        posts, _ = thread(render(body, link), longest, tail(link))
        if not link and not any(mentions(p, notice.url) for p in posts):
            posts, _ = thread(text, longest, tail(True))  # the mention was cut away
        return {"posts": posts}

    async def _send(self, batch: Batch) -> Outcome:
        posts = self.content_of(batch)["posts"]
        if self._client is None:
            path = self.context.outbox(self.name) / f"{batch.notice_id}.json"
            await asyncio.to_thread(write_json, path, request_bodies(posts, [None] * len(posts)))
            return Outcome(sent=1, meta={"posts": len(posts)})
        k, redis = self.context.keys, self.context.redis
        done = {
            int(i): as_text(v)
            for i, v in (await redis.hgetall(k.x_thread(batch.notice_id))).items()
        }
        ids: list[str | None] = [done.get(i) for i in range(len(posts))]
        todo = [i for i in range(len(posts)) if ids[i] is None]
        # the whole thread at once (an alert's always); a routine one longer than a window
        # takes (composed under other settings) goes in parts, each waiting for room, so
        # that it never waits for ever
        whole = batch.kind == "alert" or len(todo) <= room(self.context.settings)
        step = len(todo) if whole else max(1, room(self.context.settings))
        posted: set[int] = set()
        try:
            for start in range(0, len(todo), step):
                part = todo[start : start + step]
                await self._reserve(batch, part)
                for i in part:
                    await self._post_one(batch, posts[i], i, ids)
                    posted.add(i)
        except PermanentError:  # the posts never made give their room back
            unmade = [_member(batch, i) for i in todo if i not in posted]
            if unmade:
                await redis.zrem(k.x_posts, *unmade)
            raise
        return Outcome(sent=1, meta={"post_ids": ids})

    async def _post_one(self, batch: Batch, text: str, i: int, ids: list[str | None]) -> None:
        """Post the thread's post ``i`` (unless the last try did), answering the one before."""
        k, redis = self.context.keys, self.context.redis
        reply_to = next((x for x in reversed(ids[:i]) if x), None)  # "": posted, id unknown
        unsure = k.x_unsure(batch.notice_id, i)
        if await redis.exists(unsure):
            ids[i] = await self._find(text)  # the last try may have posted it
        went = time.time()
        if ids[i] is None:
            await self._wait_for_x()
            await redis.set(unsure, "1", ex=7 * 24 * 3600)
            went = time.time()  # before X's answer: what X said then counts this one
            try:
                ids[i] = await self._post(text, reply_to)
            except RetryableError as e:
                if not e.spend:  # a 429: X took nothing, no need to look for it
                    await redis.delete(unsure)
                raise
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.x_thread(batch.notice_id), str(i), ids[i] or "")
            pipe.zadd(k.x_posts, {_member(batch, i): went}, xx=True)  # when it went
            pipe.delete(unsure)
            await pipe.execute()

    async def _post(self, text: str, reply_to: str | None) -> str | None:
        assert self._client is not None
        try:
            response = await self._client.create_tweet(
                text=text, in_reply_to_tweet_id=reply_to, user_auth=True
            )
        except HTTPException as e:
            wait = await self._heed(e.response.headers, refused=isinstance(e, TooManyRequests))
            return await self._refused(e, text, wait)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise RetryableError(f"X unreachable: {type(e).__name__}") from e
        await self._heed(response.headers, refused=False)
        return str((await response.json())["data"]["id"])

    async def _refused(self, e: HTTPException, text: str, wait: float) -> str | None:
        """The id of the post X refused as a duplicate, or the error X's refusal is."""
        if isinstance(e, TooManyRequests):
            raise RetryableError("X 429: rate limited", defer=wait, spend=False) from e
        if isinstance(e, TwitterServerError):
            raise RetryableError(f"X {e.response.status}: {_message(e)}") from e
        if isinstance(e, Forbidden) and DUPLICATE in _message(e).lower():
            return await self._find(text)  # X has it already: it counts as posted
        raise PermanentError(f"X {e.response.status}: {_message(e)}") from e  # 400, 401, 403 …

    async def _find(self, text: str) -> str | None:
        """The id of the account's recent post with this text, if there is one."""
        assert self._client is not None
        try:
            if self._me is None:
                me = await (await self._client.get_me(user_auth=True)).json()
                self._me = str(me["data"]["id"])
            recent = await self._client.get_users_tweets(self._me, max_results=20, user_auth=True)
            found = (await recent.json()).get("data") or []
        except (HTTPException, TimeoutError, aiohttp.ClientError) as e:
            raise RetryableError(f"X: could not look for an earlier post: {e!r}") from e
        for post in found:
            if same_post(str(post["text"]), text):
                return str(post["id"])
        return None

    async def _reserve(self, batch: Batch, indexes: list[int]) -> None:
        """Reserve room in both windows for these posts of the thread, or wait until
        there is: routine notices leave ``NOTIFIER_X_ALERT_RESERVE`` of each to alerts.
        Alerts are counted but never held by the count (the settings may be behind X's
        tier): only by what X itself said (notifier/lua/x_reserve.lua)."""
        settings, k = self.context.settings, self.context.keys
        alert = batch.kind == "alert"
        reserve = settings.x_alert_reserve
        reply = await self._scripts.run(
            "x_reserve",
            posts_key=k.x_posts,
            blocked_key=k.x_blocked,
            said_key=k.x_said,
            now=repr(time.time()),
            seconds_15min=WINDOWS["15min"],
            allowed_15min=sys.maxsize if alert else settings.x_15min_limit - reserve,
            seconds_24h=WINDOWS["24h"],
            allowed_24h=sys.maxsize if alert else settings.x_daily_limit - reserve,
            alert_reserve=0 if alert else reserve,
            posts=[_member(batch, i) for i in indexes],
        )
        why, wait = map(as_text, reply)
        if why == "ok":
            return
        seconds = max(1.0, float(wait))
        event(
            log,
            "x.held",
            notice=batch.notice_id,
            kind=batch.kind,
            posts=len(indexes),
            window=why,
            seconds=round(seconds, 1),
        )
        reason = "X said no more posts yet" if why == "x" else f"no room in X's {why} window"
        raise RetryableError(f"X: {reason} for {len(indexes)} posts", defer=seconds, spend=False)

    async def _wait_for_x(self) -> None:
        """Wait (raise a deferral) while X has said no more posts."""
        until = await self.context.redis.get(self.context.keys.x_blocked)
        wait = float(as_text(until)) - time.time() if until else 0.0
        if wait > 0:
            raise RetryableError("X said no more posts yet", defer=max(1.0, wait), spend=False)

    async def _heed(self, headers: Mapping[str, str], refused: bool) -> float:
        """Record X's "no more posts until" from a create-post answer's headers, for every
        worker; the seconds to wait (at least one after a 429)."""
        now = time.time()
        await self._remember(headers, now)
        found = spent(headers, refused, now)
        if found is None:
            return 0.0
        window, until = found
        wait = until - now
        if wait > 0:
            await self._scripts.run(
                "x_block",
                blocked_key=self.context.keys.x_blocked,
                until_seconds=repr(until),
                until_ms=int(until * 1000),
            )
            event(
                log,
                "x.limit_reached",
                logging.WARNING,
                window=window,
                until=datetime.fromtimestamp(until, UTC).isoformat(),
                seconds=round(wait, 1),
            )
        return max(1.0, wait) if refused else max(0.0, wait)

    async def _remember(self, headers: Mapping[str, str], now: float) -> None:
        """Keep what X said of each window it names (remaining, reset) until that reset:
        another tool posting on the account spends room this service cannot count."""
        said = {
            window: f"{remaining}|{now!r}|{reset}"
            for window, (remaining, reset) in windows(headers).items()
            if reset > now
        }
        if said:
            key = self.context.keys.x_said
            async with self.context.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=cast("dict[FieldT, EncodableT]", said))
                pipe.expire(key, int(WINDOWS["24h"]) + 60)
                await pipe.execute()

    async def close(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()


def _member(batch: Batch, index: int) -> str:
    return f"{batch.notice_id}:{index}"


def _message(error: HTTPException) -> str:
    messages = list(getattr(error, "api_messages", []) or [])
    return "; ".join(str(m) for m in messages) or str(getattr(error.response, "reason", ""))
