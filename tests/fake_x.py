"""A fake X API v2 that tweepy's async client talks to over HTTP.

It speaks X's wire protocol as X documents it (https://docs.x.com/x-api): OAuth 1.0a
user-context requests, their HMAC-SHA1 signatures checked with oauthlib over the URL the
client signed (``https://api.twitter.com`` + path + query: ``channels.x_session`` moves
only the destination), nonces that work once, X's problem bodies, rate limits as X
publishes them (https://docs.x.com/x-api/fundamentals/rate-limits: per endpoint in any 15
minutes, ``x-rate-limit-*`` headers on every response; ``POST /2/tweets`` also in any 24
hours, ``x-user-limit-24hour-*`` and ``x-app-limit-24hour-*`` headers on its answers;
429 beyond either), post texts weighed by twitter-text, duplicate-content refusals,
replies, and the account's timeline.

The windows roll (trailing): a request counts until it is a window's length old, and
``…-reset`` is when the oldest request counted leaves the window (room for one more).

Endpoints: ``POST /2/tweets``, ``GET /2/users/me``, ``GET /2/users/{id}/tweets``; anything
else is 404.

Faults queued with :meth:`FakeX.fail` apply to the next ``POST /2/tweets`` requests, one
each, in order, before anything else is looked at. The long sleeps of the ``"timeout"``
and ``"hang"`` faults end as soon as :meth:`FakeX.stop` is called.

The handlers log nothing (the access log is off too): post texts stay out of logs.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from aiohttp import web
from oauthlib import oauth1  # type: ignore[import-untyped]
from oauthlib.oauth1.rfc5849 import signature  # type: ignore[import-untyped]
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from twitter_text import parse_tweet

from tests.fake_server import FakeServer

__all__ = [
    "DAILY_LIMITS",
    "DAY",
    "DUPLICATE_CONTENT",
    "FAULT_SLEEP",
    "GET_ME",
    "GET_USER_TWEETS",
    "INVALID_REQUEST_DETAIL",
    "POST_TWEETS",
    "RATE_LIMITS",
    "REPLY_NOT_VISIBLE",
    "WINDOW",
    "X_ORIGIN",
    "FakeX",
]

X_ORIGIN: Final = "https://api.twitter.com"  # what tweepy signs, whatever the destination
FAULT_SLEEP: Final = 30.0  # how long "timeout" and "hang" keep the client waiting
NONCE_TTL: Final = 300.0  # a nonce may not come back within five minutes
TIMESTAMP_SKEW: Final = 300  # oauth_timestamp must be this close to the server's clock
WINDOW: Final = 15 * 60  # X's rate-limit window, seconds
DAY: Final = 24 * 3600  # X's 24-hour window for posts
TWITTER_EPOCH_MS: Final = 1288834974657  # snowflake ids count milliseconds from here

# Requests a 15-minute window allows, per endpoint (user context; X's published limits).
POST_TWEETS: Final = "POST /2/tweets"
GET_ME: Final = "GET /2/users/me"
GET_USER_TWEETS: Final = "GET /2/users/:id/tweets"
OTHER: Final = "*"
RATE_LIMITS: Final = {POST_TWEETS: 100, GET_ME: 75, GET_USER_TWEETS: 900, OTHER: 300}
# Posts (POST /2/tweets requests) 24 hours allow: X publishes 10,000 per app; the app has
# this one user, so the user's own 24 hours hold as many (older tiers had less for both:
# the free tier 17 and 17, Basic 100 per user and 1,667 per app)
DAILY_LIMITS: Final = {"user": 10_000, "app": 10_000}
DAILY_HEADERS: Final = {"user": "x-user-limit-24hour", "app": "x-app-limit-24hour"}

INVALID_REQUEST: Final = "https://api.twitter.com/2/problems/invalid-request"
NOT_FOUND_TYPE: Final = "https://api.twitter.com/2/problems/resource-not-found"
INVALID_REQUEST_DETAIL: Final = "One or more parameters to your request was invalid."
DUPLICATE_CONTENT: Final = "You are not allowed to create a Tweet with duplicate content."
REPLY_NOT_VISIBLE: Final = (
    "You attempted to reply to a Tweet that is deleted or not visible to you."
)
FORBIDDEN: Final = "You are not permitted to perform this action."
STATUS_TITLES: Final = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

SERVER_ERRORS: Final = frozenset({500, 502, 503, 504})
CLIENT_ERRORS: Final = frozenset({401, 403, 429})
NAMED_FAULTS: Final = frozenset({"ok", "timeout", "hang"})

TEXT_LIMIT: Final = 280  # weighted, as twitter-text counts
POST_FIELDS: Final = frozenset(
    {
        "card_uri",
        "community_id",
        "direct_message_deep_link",
        "edit_options",
        "for_super_followers_only",
        "geo",
        "made_with_ai",
        "media",
        "nullcast",
        "paid_partnership",
        "poll",
        "quote_tweet_id",
        "reply",
        "reply_settings",
        "share_with_followers",
        "text",
    }
)
REPLY_FIELDS: Final = frozenset({"in_reply_to_tweet_id", "exclude_reply_user_ids"})
TWEET_FIELDS: Final = frozenset(
    {
        "article",
        "attachments",
        "author_id",
        "card_uri",
        "community_id",
        "context_annotations",
        "conversation_id",
        "created_at",
        "display_text_range",
        "edit_controls",
        "edit_history_tweet_ids",
        "entities",
        "geo",
        "id",
        "in_reply_to_user_id",
        "lang",
        "media_metadata",
        "non_public_metrics",
        "note_tweet",
        "organic_metrics",
        "possibly_sensitive",
        "promoted_metrics",
        "public_metrics",
        "referenced_tweets",
        "reply_settings",
        "scopes",
        "source",
        "text",
        "withheld",
    }
)
USER_FIELDS: Final = frozenset(
    {
        "affiliation",
        "connection_status",
        "created_at",
        "description",
        "entities",
        "id",
        "location",
        "most_recent_tweet_id",
        "name",
        "pinned_tweet_id",
        "profile_banner_url",
        "profile_image_url",
        "protected",
        "public_metrics",
        "receives_your_dm",
        "subscription_type",
        "url",
        "username",
        "verified",
        "verified_type",
        "withheld",
    }
)
TWEET_EXPANSIONS: Final = frozenset(
    {
        "article.cover_media",
        "article.media_entities",
        "attachments.media_keys",
        "attachments.media_source_tweet",
        "attachments.poll_ids",
        "author_id",
        "edit_history_tweet_ids",
        "entities.mentions.username",
        "geo.place_id",
        "in_reply_to_user_id",
        "entities.note.mentions.username",
        "referenced_tweets.id",
        "referenced_tweets.id.attachments.media_keys",
        "referenced_tweets.id.author_id",
    }
)
USER_EXPANSIONS: Final = frozenset(
    {"affiliation.user_id", "most_recent_tweet_id", "pinned_tweet_id"}
)
ME_PARAMS: Final = frozenset({"expansions", "tweet.fields", "user.fields"})
TIMELINE_PARAMS: Final = frozenset(
    {
        "end_time",
        "exclude",
        "expansions",
        "max_results",
        "media.fields",
        "pagination_token",
        "place.fields",
        "poll.fields",
        "since_id",
        "start_time",
        "tweet.fields",
        "until_id",
        "user.fields",
    }
)
OAUTH_REQUIRED: Final = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_nonce",
    "oauth_timestamp",
    "oauth_signature_method",
    "oauth_version",
    "oauth_signature",
)
ACCOUNT_CREATED: Final = "2010-04-01T00:00:00.000Z"

NUMERIC_ID: Final = re.compile(r"[0-9]{1,19}")
USER_TWEETS: Final = re.compile(r"/2/users/(?P<id>[^/]+)/tweets")

Fault = int | str
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_dumps: Final = partial(json.dumps, ensure_ascii=False)


# -- X's bodies ---------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _problem(status: int, detail: str | None = None) -> web.Response:
    """X's RFC 7807 problem body for ``status``."""
    title = STATUS_TITLES[status]
    body = {"title": title, "detail": detail or title, "type": "about:blank", "status": status}
    return _json(body, status)


def _invalid(message: str, parameters: dict[str, list[str]] | None = None) -> web.Response:
    """X's 400 "Invalid Request" with one error."""
    error: dict[str, Any] = {"parameters": parameters} if parameters else {}
    error["message"] = message
    body = {
        "errors": [error],
        "title": "Invalid Request",
        "detail": INVALID_REQUEST_DETAIL,
        "type": INVALID_REQUEST,
    }
    return _json(body, 400)


def _not_one_of(name: str, value: str, allowed: Iterable[str]) -> web.Response:
    choices = ",".join(sorted(allowed))
    return _invalid(
        f"The `{name}` query parameter value [{value}] is not one of [{choices}]",
        {name: [value]},
    )


def _unknown_parameter(name: str, allowed: Iterable[str]) -> web.Response:
    choices = ",".join(sorted(allowed))
    return _invalid(f"The query parameter [{name}] is not one of [{choices}]", {name: [""]})


def _body_error(path: str, message: str, value: Any) -> web.Response:
    """A request-body complaint, worded as X's schema validation words them."""
    return _invalid(f"{path}: {message}", {path: [_dumps(value)]})


def _iso(wall: float) -> str:
    moment = datetime.fromtimestamp(wall, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text_problem(text: str) -> str | None:
    """Why X refuses ``text``, or None when twitter-text finds it valid."""
    parsed = parse_tweet(text)
    if parsed.valid:
        return None
    if not text:
        return "$.text: must not be empty"
    if parsed.weightedLength > TEXT_LIMIT:
        return (
            f"$.text: is {parsed.weightedLength} characters long as twitter-text weighs it;"
            f" the limit is {TEXT_LIMIT}"
        )
    return "$.text: contains characters that are not allowed"


class FakeX(FakeServer):
    """An X API v2 on 127.0.0.1 (random port) for one account, recording what it accepted.

    ``posts``: every accepted post, in order: ``{"id", "text", "in_reply_to" (str | None),
    "at"}`` (``at`` is ``time.monotonic()`` when X accepted it).
    ``responses``: ``(method, path, status)`` of every response, in order.
    ``limits``: requests allowed per 15-minute window, by endpoint key (``POST_TWEETS``,
    ``GET_ME``, ``GET_USER_TWEETS``); beyond it X answers 429 until the oldest one counted
    has left the window. ``daily_limits``: posts allowed in 24 hours, ``"user"`` and
    ``"app"``. ``window`` and ``day``: the two windows' lengths in seconds (tests make
    them short to see them roll).
    """

    def __init__(
        self,
        consumer_key: str = "test-consumer-key",
        consumer_secret: str = "test-consumer-secret",
        access_token: str = "test-access-token",
        access_token_secret: str = "test-access-secret",
        user_id: str = "1500000000000000001",
        username: str = "nerima_city",
    ) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret
        self.user_id = user_id
        self.username = username
        self.name = "練馬区"
        self.posts: list[dict[str, Any]] = []
        self.responses: list[tuple[str, str, int]] = []
        self.limits: dict[str, int] = dict(RATE_LIMITS)
        self.daily_limits: dict[str, int] = dict(DAILY_LIMITS)
        self.window: float = WINDOW
        self.day: float = DAY
        self._signer = oauth1.Client(
            consumer_key,
            client_secret=consumer_secret,
            resource_owner_key=access_token,
            resource_owner_secret=access_token_secret,
        )
        self._by_id: dict[str, dict[str, Any]] = {}
        self._created_at: dict[str, float] = {}  # post id -> wall clock
        self._last_id = 0
        self._faults: deque[Fault] = deque()
        self._nonces: dict[str, float] = {}  # nonce -> monotonic time it was used
        self._counted: dict[str, deque[float]] = {}  # bucket -> wall clock of each request
        self._posted: deque[float] = deque()  # POST /2/tweets requests, for the 24 hours
        self._blocked_until: dict[str, int] = {}  # a 429 fault empties a window until then

    # -- lifecycle ---------------------------------------------------------------------

    def _middlewares(self) -> list[Any]:
        return [self._envelope]

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/2/tweets", self._on_create)
        app.router.add_get("/2/users/me", self._on_me)
        app.router.add_get("/2/users/{id}/tweets", self._on_user_tweets)
        app.router.add_route("*", "/{tail:.*}", self._on_unknown)

    # -- test controls -----------------------------------------------------------------

    def fail(self, *faults: int | str) -> None:
        """Queue faults, one per coming ``POST /2/tweets``, in order, checked first.

        500/502/503/504: that status and X's problem body, nothing accepted.
        429: "Too Many Requests", nothing accepted, and the 15-minute window is empty
        until ``x-rate-limit-reset`` (one to two seconds ahead): posts before then get 429
        too.
        401/403: that status and its problem body, nothing accepted.
        ``"timeout"``: handle the request as usual (a valid post is created), then keep
        the answer back for 30 s, so the client times out though X got it.
        ``"hang"``: keep the client waiting 30 s, accept nothing, then answer 503.
        ``"ok"``: no fault: the request is handled as usual (to place a fault further on).
        """
        for fault in faults:
            named = isinstance(fault, str) and fault in NAMED_FAULTS
            status = type(fault) is int and fault in SERVER_ERRORS | CLIENT_ERRORS
            if not (named or status):
                raise ValueError(f"unknown fault {fault!r}")
        self._faults.extend(faults)

    def thread(self, last_id: str) -> list[dict[str, Any]]:
        """The chain of replies ending at ``last_id``, first post first.

        Raises KeyError when X has no post ``last_id``."""
        chain = [self._by_id[last_id]]
        while (parent := chain[-1]["in_reply_to"]) is not None and parent in self._by_id:
            chain.append(self._by_id[parent])
        chain.reverse()
        return chain

    # -- plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _envelope(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        bucket = _bucket(request.method, request.path)
        for name, value in self._limit_headers(bucket).items():
            response.headers.setdefault(name, value)
        self.responses.append((request.method, request.path, response.status))
        return response

    def _recent(self, bucket: str) -> deque[float]:
        """The bucket's requests still in the 15-minute window, oldest first."""
        counted = self._counted.setdefault(bucket, deque())
        _drop_before(counted, time.time() - self.window)
        return counted

    def _limit_headers(self, bucket: str) -> dict[str, str]:
        now = time.time()
        counted = self._recent(bucket)
        limit = self.limits.get(bucket, RATE_LIMITS[OTHER])
        blocked = self._blocked_until.get(bucket, 0)
        if blocked > now:
            remaining, reset = 0, blocked
        else:
            remaining, reset = max(0, limit - len(counted)), _reset(counted, self.window, now)
        headers = {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(reset),
        }
        if bucket == POST_TWEETS:
            _drop_before(self._posted, now - self.day)
            for scope, prefix in DAILY_HEADERS.items():
                daily = self.daily_limits[scope]
                headers[f"{prefix}-limit"] = str(daily)
                headers[f"{prefix}-remaining"] = str(max(0, daily - len(self._posted)))
                headers[f"{prefix}-reset"] = str(_reset(self._posted, self.day, now))
        return headers

    def _take(self, bucket: str) -> bool:
        """Count a request against its windows; False when one is spent."""
        now = time.time()
        counted = self._recent(bucket)
        limit = self.limits.get(bucket, RATE_LIMITS[OTHER])
        if self._blocked_until.get(bucket, 0) > now or len(counted) >= limit:
            return False
        if bucket == POST_TWEETS:
            _drop_before(self._posted, now - self.day)
            if len(self._posted) >= min(self.daily_limits.values()):
                return False
            self._posted.append(now)
        counted.append(now)
        return True

    async def _authenticated(self, request: web.Request) -> bool:
        """An OAuth 1.0a user-context request for this account, its signature right."""
        header = request.headers.get("Authorization", "")
        try:
            items = oauth_utils.parse_authorization_header(header)
        except ValueError:
            return False
        oauth = {k: oauth_utils.unescape(v) for k, v in items if k.startswith("oauth_")}
        if any(not oauth.get(name) for name in OAUTH_REQUIRED):
            return False
        if oauth["oauth_signature_method"] != "HMAC-SHA1" or oauth["oauth_version"] != "1.0":
            return False
        if not (
            _same(oauth["oauth_consumer_key"], self.consumer_key)
            and _same(oauth["oauth_token"], self.access_token)
        ):
            return False
        stamp = oauth["oauth_timestamp"]
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > TIMESTAMP_SKEW:
            return False
        path, _, query = request.raw_path.partition("?")
        body = None
        if request.content_type == "application/x-www-form-urlencoded":
            body = await request.text()  # form bodies are signed; JSON bodies are not
        try:
            params = signature.collect_parameters(
                uri_query=query, body=body, headers={"Authorization": header}
            )
            base = signature.signature_base_string(
                request.method,
                signature.base_string_uri(X_ORIGIN + path),
                signature.normalize_parameters(params),
            )
        except ValueError:
            return False
        expected = signature.sign_hmac_sha1_with_client(base, self._signer)
        if not _same(expected, oauth["oauth_signature"]):
            return False
        now = time.monotonic()
        self._nonces = {n: at for n, at in self._nonces.items() if now - at < NONCE_TTL}
        nonce = oauth["oauth_nonce"]
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = now
        return True

    async def _gate(self, request: web.Request) -> web.Response | None:
        """401 or 429 for a request that may not go on, else None (and it is counted)."""
        if not await self._authenticated(request):
            return _problem(401)
        if not self._take(_bucket(request.method, request.path)):
            return _problem(429)
        return None

    def _next_id(self) -> str:
        """A snowflake-like id: milliseconds since X's epoch, shifted; always increasing."""
        candidate = (int(time.time() * 1000) - TWITTER_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, candidate)
        return str(self._last_id)

    # -- endpoints ---------------------------------------------------------------------

    async def _on_create(self, request: web.Request) -> web.Response:
        fault = self._faults.popleft() if self._faults else None
        if fault == "hang":
            await self._pause(FAULT_SLEEP)
            return _problem(503)
        if isinstance(fault, int):
            if fault == 429:
                self._blocked_until[POST_TWEETS] = math.ceil(time.time() + 1)
            return _problem(fault, FORBIDDEN if fault == 403 else None)
        response = await self._create(request)
        if fault == "timeout":
            await self._pause(FAULT_SLEEP)  # X made the post; the answer is lost on the way
        return response

    async def _create(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        if request.content_type != "application/json":
            return _invalid(f"Content-Type [{request.content_type}] is not application/json")
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _invalid("The request body is not valid JSON")
        if not isinstance(body, dict):
            return _body_error("$", "must be an object", body)
        for name, value in body.items():
            if name not in POST_FIELDS:
                return _body_error(
                    f"$.{name}",
                    "is not defined in the schema and the schema does not allow"
                    " additional properties",
                    value,
                )
        text = body.get("text")
        if "text" not in body:
            return _body_error("$.text", "is missing but it is required", body)
        if not isinstance(text, str):
            return _body_error("$.text", f"{type(text).__name__} found, string expected", text)
        problem = _text_problem(text)
        if problem is not None:
            return _invalid(problem, {"text": [text]})
        in_reply_to: str | None = None
        if "reply" in body:
            reply = body["reply"]
            if not isinstance(reply, dict):
                return _body_error("$.reply", "must be an object", reply)
            for name, value in reply.items():
                if name not in REPLY_FIELDS:
                    return _body_error(
                        f"$.reply.{name}",
                        "is not defined in the schema and the schema does not allow"
                        " additional properties",
                        value,
                    )
            if "in_reply_to_tweet_id" not in reply:
                return _body_error(
                    "$.reply.in_reply_to_tweet_id", "is missing but it is required", reply
                )
            parent = reply["in_reply_to_tweet_id"]
            if not isinstance(parent, str) or not NUMERIC_ID.fullmatch(parent):
                return _body_error(
                    "$.reply.in_reply_to_tweet_id",
                    "does not match the regex pattern ^[0-9]{1,19}$",
                    parent,
                )
            if parent not in self._by_id:
                return _invalid(REPLY_NOT_VISIBLE, {"reply.in_reply_to_tweet_id": [parent]})
            in_reply_to = parent
        if any(post["text"] == text for post in self.posts):
            return _problem(403, DUPLICATE_CONTENT)

        post_id = self._next_id()
        post = {"id": post_id, "text": text, "in_reply_to": in_reply_to, "at": time.monotonic()}
        self.posts.append(post)
        self._by_id[post_id] = post
        self._created_at[post_id] = time.time()
        data = {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}
        return _json({"data": data}, 201)

    async def _on_me(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        query = request.query
        for name in query:
            if name not in ME_PARAMS:
                return _unknown_parameter(name, ME_PARAMS)
        failed = _check_list(query, "expansions", USER_EXPANSIONS) or _check_list(
            query, "tweet.fields", TWEET_FIELDS
        )
        if failed is not None:
            return failed
        fields, failed = _fields(query, "user.fields", USER_FIELDS)
        if failed is not None:
            return failed
        user: dict[str, Any] = {"id": self.user_id, "name": self.name, "username": self.username}
        extras = {
            "created_at": ACCOUNT_CREATED,
            "description": "",
            "protected": False,
            "verified": False,
        }
        user.update({name: value for name, value in extras.items() if name in fields})
        return _json({"data": user})

    async def _on_user_tweets(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        user_id = request.match_info["id"]
        query = request.query
        for name in query:
            if name not in TIMELINE_PARAMS:
                return _unknown_parameter(name, TIMELINE_PARAMS)
        if not NUMERIC_ID.fullmatch(user_id):
            return _invalid(
                f"The `id` query parameter value [{user_id}] does not match ^[0-9]{{1,19}}$",
                {"id": [user_id]},
            )
        failed = _check_list(query, "expansions", TWEET_EXPANSIONS) or _check_list(
            query, "user.fields", USER_FIELDS
        )
        if failed is not None:
            return failed
        fields, failed = _fields(query, "tweet.fields", TWEET_FIELDS)
        if failed is not None:
            return failed
        exclude, failed = _fields(query, "exclude", frozenset({"replies", "retweets"}))
        if failed is not None:
            return failed
        raw_max = query.get("max_results", "10")
        if not raw_max.isdigit() or not 5 <= int(raw_max) <= 100:
            return _invalid(
                f"The `max_results` query parameter value [{raw_max}] is not between 5 and 100",
                {"max_results": [raw_max]},
            )
        if user_id != self.user_id:
            return _json({"errors": [_user_not_found(user_id)]})

        selected, failed = self._timeline(query, "replies" in exclude)
        if failed is not None:
            return failed
        page = selected[: int(raw_max)]
        if not page:
            return _json({"meta": {"result_count": 0}})
        meta: dict[str, Any] = {
            "result_count": len(page),
            "newest_id": page[0]["id"],
            "oldest_id": page[-1]["id"],
        }
        if len(selected) > len(page):
            meta["next_token"] = _page_token(selected[len(page)]["id"])
        return _json({"data": [self._tweet(post, fields) for post in page], "meta": meta})

    def _timeline(
        self, query: Any, exclude_replies: bool
    ) -> tuple[list[dict[str, Any]], web.Response | None]:
        """The account's posts the query selects, newest first."""
        posts = [p for p in reversed(self.posts) if not (exclude_replies and p["in_reply_to"])]
        for name, keep in (("since_id", 1), ("until_id", -1)):
            if name in query:
                bound = query[name]
                if not NUMERIC_ID.fullmatch(bound):
                    return [], _invalid(
                        f"The `{name}` query parameter value [{bound}] is not valid",
                        {name: [bound]},
                    )
                posts = [p for p in posts if (int(p["id"]) - int(bound)) * keep > 0]
        for name, keep in (("start_time", 1), ("end_time", -1)):
            if name in query:
                try:
                    moment = datetime.fromisoformat(query[name]).timestamp()
                except ValueError:
                    return [], _invalid(
                        f"The `{name}` query parameter value [{query[name]}] is not valid",
                        {name: [query[name]]},
                    )
                posts = [p for p in posts if (self._created_at[p["id"]] - moment) * keep >= 0]
        if "pagination_token" in query:
            token = query["pagination_token"]
            start = _from_page_token(token)
            ids = [p["id"] for p in posts]
            if start not in ids:
                return [], _invalid(
                    f"The `pagination_token` query parameter value [{token}] is not valid",
                    {"pagination_token": [token]},
                )
            posts = posts[ids.index(start) :]
        return posts, None

    def _tweet(self, post: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
        """A post as X shows it, with the requested fields the fake knows."""
        post_id: str = post["id"]
        tweet: dict[str, Any] = {
            "id": post_id,
            "text": post["text"],
            "edit_history_tweet_ids": [post_id],
        }
        parent = post["in_reply_to"]
        if "created_at" in fields:
            tweet["created_at"] = _iso(self._created_at[post_id])
        if "author_id" in fields:
            tweet["author_id"] = self.user_id
        if "conversation_id" in fields:
            tweet["conversation_id"] = self.thread(post_id)[0]["id"]
        if "in_reply_to_user_id" in fields and parent is not None:
            tweet["in_reply_to_user_id"] = self.user_id
        if "referenced_tweets" in fields and parent is not None:
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": parent}]
        if "reply_settings" in fields:
            tweet["reply_settings"] = "everyone"
        if "possibly_sensitive" in fields:
            tweet["possibly_sensitive"] = False
        return tweet

    async def _on_unknown(self, request: web.Request) -> web.Response:
        return _problem(404, "Sorry, that page does not exist.")


def _bucket(method: str, path: str) -> str:
    if method == "POST" and path == "/2/tweets":
        return POST_TWEETS
    if method == "GET" and path == "/2/users/me":
        return GET_ME
    if method == "GET" and USER_TWEETS.fullmatch(path):
        return GET_USER_TWEETS
    return OTHER


def _drop_before(times: deque[float], start: float) -> None:
    while times and times[0] <= start:
        times.popleft()


def _reset(times: deque[float], length: float, now: float) -> int:
    """When the oldest request counted leaves its window (epoch seconds, rounded up)."""
    return math.ceil((times[0] if times else now) + length)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _fields(
    query: Any, name: str, allowed: frozenset[str]
) -> tuple[frozenset[str], web.Response | None]:
    """A comma-separated list parameter, each value checked against ``allowed``."""
    raw: str = query.get(name, "")
    values = frozenset(v for v in raw.split(",") if v)
    for value in sorted(values):
        if value not in allowed:
            return frozenset(), _not_one_of(name, value, allowed)
    return values, None


def _check_list(query: Any, name: str, allowed: frozenset[str]) -> web.Response | None:
    return _fields(query, name, allowed)[1]


def _page_token(post_id: str) -> str:
    return f"{int(post_id):x}"


def _from_page_token(token: str) -> str | None:
    try:
        return str(int(token, 16))
    except ValueError:
        return None


def _user_not_found(user_id: str) -> dict[str, Any]:
    return {
        "value": user_id,
        "detail": f"Could not find user with id: [{user_id}].",
        "title": "Not Found Error",
        "resource_type": "user",
        "parameter": "id",
        "resource_id": user_id,
        "type": NOT_FOUND_TYPE,
    }
