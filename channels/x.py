"""X (Twitter): every public notice on the ward's account, through tweepy's async client.

One notice is one post, or a numbered thread when it does not fit (a notice with a link
becomes one post that ends with the link instead). X has no idempotency key, so each
post's id is recorded as soon as X gives it: a retry, or a restarted worker, continues
the thread where it stopped. A post whose outcome is unknown (a timeout) is looked for on
the account's timeline before it is sent again.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from tweepy.asynchronous import AsyncClient
from tweepy.errors import (
    BadRequest,
    Forbidden,
    HTTPException,
    TooManyRequests,
    TwitterServerError,
    Unauthorized,
)

from channels.base import BaseChannel, Batch, Context, Outcome, PermanentError, RetryableError
from channels.outbox import write_json
from channels.x_session import x_session
from channels.x_text import fits, same_post, thread, with_link
from notifier.models import AnyNotice
from notifier.render import Templates
from notifier.streams import as_text

DUPLICATE = "duplicate content"

# KEYS: today's post count.  ARGV: posts wanted, posts allowed today.
# Takes the posts from today's budget, or nothing and answers -1.
_BUDGET = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return used + tonumber(ARGV[1])
"""


def request_bodies(posts: list[str], ids: list[str | None]) -> list[dict[str, Any]]:
    """The create-post requests of a thread, each answering the one before."""
    bodies: list[dict[str, Any]] = []
    for i, text in enumerate(posts):
        body: dict[str, Any] = {"text": text}
        if i:
            body["reply"] = {"in_reply_to_tweet_id": ids[i - 1] or f"(post {i})"}
        bodies.append(body)
    return bodies


class XChannel(BaseChannel):
    name: ClassVar[str] = "x"
    audience = "public"
    batch_size: ClassVar[int] = 1
    translated = False  # the ward's account posts in Japanese

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        settings = context.settings
        self.live = settings.live("x")
        self._budget = context.redis.register_script(_BUDGET)
        self._client: AsyncClient | None = None
        self._me: str | None = None
        if self.live:
            secret = {
                name: getattr(settings, f"x_{name}").get_secret_value()
                for name in (
                    "consumer_key",
                    "consumer_secret",
                    "access_token",
                    "access_token_secret",
                )
            }
            self._client = AsyncClient(**secret)
            self._client.session = x_session(settings.x_api_url, settings.x_timeout)

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> dict[str, Any]:
        settings = templates.settings

        def render(body: str) -> str:
            return templates.render(
                "x/announcement.txt", notice, lang, body=body, hashtags=settings.x_hashtags
            )

        text = render(notice.body_in(lang))
        if fits(text):
            return {"posts": [text]}
        if notice.url:
            post = with_link(render, notice.body_in(lang))
            if fits(post):
                return {"posts": [post]}
            # X does not see the link as one (a domain it does not know), or the title
            # leaves the body no room: a thread, like a notice without a link
        posts, _ = thread(text, settings.x_max_posts)
        return {"posts": posts}

    async def _send(self, batch: Batch) -> Outcome:
        posts: list[str] = batch.content["posts"]
        if self._client is None:
            path = self.context.outbox(self.name) / f"{batch.notice_id}.json"
            await asyncio.to_thread(write_json, path, request_bodies(posts, [None] * len(posts)))
            return Outcome(sent=1, meta={"posts": len(posts)})
        k, redis = self.context.keys, self.context.redis
        done_key = k.x_thread(batch.notice_id)
        done = {int(i): as_text(v) for i, v in (await redis.hgetall(done_key)).items()}
        ids: list[str | None] = [done.get(i) for i in range(len(posts))]
        await self._take_budget(batch, sum(1 for i in ids if i is None))
        for i, text in enumerate(posts):
            if ids[i] is not None:
                continue  # posted before a crash or a retry: the thread goes on from it
            reply_to = next((x for x in reversed(ids[:i]) if x), None)  # "": posted, id unknown
            unsure = k.x_unsure(batch.notice_id, i)
            if await redis.exists(unsure):
                ids[i] = await self._find(text)  # the last try may have posted it
            if ids[i] is None:
                await redis.set(unsure, "1", ex=7 * 24 * 3600)
                ids[i] = await self._post(text, reply_to)
            await redis.hset(done_key, str(i), ids[i] or "")
            await redis.delete(unsure)
        return Outcome(sent=1, meta={"post_ids": ids})

    async def _post(self, text: str, reply_to: str | None) -> str | None:
        assert self._client is not None
        try:
            response = await self._client.create_tweet(
                text=text, in_reply_to_tweet_id=reply_to, user_auth=True
            )
            return str(response.data["id"])
        except TooManyRequests as e:
            reset = e.response.headers.get("x-rate-limit-reset")
            wait = max(1.0, int(reset) - time.time()) if reset else 60.0
            raise RetryableError("X 429: rate limited", defer=wait, spend=False) from e
        except TwitterServerError as e:
            raise RetryableError(f"X {e.response.status}: {_message(e)}") from e
        except Forbidden as e:
            if DUPLICATE in _message(e).lower():  # X has it already: it counts as posted
                return await self._find(text)
            raise PermanentError(f"X 403: {_message(e)}") from e
        except (Unauthorized, BadRequest) as e:
            raise PermanentError(f"X {e.response.status}: {_message(e)}") from e
        except HTTPException as e:
            raise PermanentError(f"X {e.response.status}: {_message(e)}") from e
        except (TimeoutError, aiohttp.ClientError) as e:
            raise RetryableError(f"X unreachable: {type(e).__name__}") from e

    async def _find(self, text: str) -> str | None:
        """The id of the account's recent post with this text, if there is one."""
        assert self._client is not None
        try:
            if self._me is None:
                self._me = str((await self._client.get_me(user_auth=True)).data["id"])
            recent = await self._client.get_users_tweets(self._me, max_results=20, user_auth=True)
        except (HTTPException, TimeoutError, aiohttp.ClientError) as e:
            raise RetryableError(f"X: could not look for an earlier post: {e!r}") from e
        for post in recent.data or []:
            if same_post(str(post["text"]), text):
                return str(post["id"])
        return None

    async def _take_budget(self, batch: Batch, posts: int) -> None:
        """Count today's posts against the account's budget; routine notices leave the
        last few for alerts, and wait for tomorrow when there is no room."""
        if not posts:
            return
        settings = self.context.settings
        now = datetime.now(settings.tz)
        # alerts are never held: they are counted, and may use the reserve and beyond
        allowed = settings.x_daily_limit - settings.x_alert_reserve
        if batch.kind == "alert":
            allowed = sys.maxsize
        key = self.context.keys.x_budget(now.date().isoformat())
        if int(await self._budget(keys=[key], args=[posts, allowed])) < 0:
            tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=5)
            raise RetryableError(
                "X: today's post budget is spent",
                defer=(tomorrow - now).total_seconds(),
                spend=False,
            )

    async def close(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()


def _message(error: HTTPException) -> str:
    messages = list(getattr(error, "api_messages", []) or [])
    return "; ".join(str(m) for m in messages) or str(getattr(error.response, "reason", ""))
