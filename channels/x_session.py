"""The aiohttp session tweepy's async client runs on, pointed at ``NOTIFIER_X_API_URL``.

tweepy builds every URL on https://api.twitter.com; a client middleware moves requests
for that host to the configured base (a staging proxy, the tests' fake) after tweepy has
signed them, so tweepy's own request code — OAuth 1.0a signing included — stays in the
path unchanged.
"""

from __future__ import annotations

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from yarl import URL

X_HOST = "api.twitter.com"


def x_session(api_url: str, timeout: float = 10.0) -> aiohttp.ClientSession:
    target = URL(api_url)

    async def to_api_base(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if request.url.host == X_HOST and target.host != X_HOST:
            assert target.host is not None
            request.url = (
                request.url.with_scheme(target.scheme)
                .with_host(target.host)
                .with_port(target.explicit_port)
            )
        return await handler(request)

    return aiohttp.ClientSession(
        middlewares=(to_api_base,), timeout=aiohttp.ClientTimeout(total=timeout)
    )
