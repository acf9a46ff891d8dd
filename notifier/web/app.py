"""The aiohttp application, assembled: the middlewares, then every module's routes."""

from __future__ import annotations

from aiohttp import web

from notifier.runtime import Runtime
from notifier.web import (
    alerts,
    api,
    console,
    desk,
    drafts,
    feed,
    health,
    line,
    middleware,
    openapi,
    resident,
    shelters,
    subscribe,
)
from notifier.web.http import RUNTIME


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[middleware.security_headers, middleware.errors, middleware.api_limits],
        client_max_size=runtime.settings.max_body_bytes,
    )
    app[RUNTIME] = runtime
    health.add_routes(app)
    api.add_routes(app)
    alerts.add_routes(app)
    drafts.add_routes(app)
    feed.add_routes(app)
    line.add_routes(app)
    subscribe.add_routes(app)
    resident.add_routes(app)
    console.add_routes(app)
    desk.add_routes(app)
    shelters.add_routes(app)
    openapi.add_routes(app)
    return app
