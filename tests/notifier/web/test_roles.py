"""Every route of the application, walked with every role and with none.

The table below says who each route is for. A route missing from it fails the test, so a
new route has to be placed in the table (and so thought about) before it can land.
"""

from __future__ import annotations

import re

import aiohttp

from notifier.runtime import Runtime
from notifier.service import Service
from notifier.tokens import GRANTS, ROLES
from notifier.web import make_app
from tests.notifier.web.test_console import Console

PUBLIC = "public"  # anyone: health, metrics, residents' pages, sign-in
SIGNED = "signed"  # any signed-in console user
# (method, route) → the role it needs
ROUTES = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/shelters"): PUBLIC,
    ("GET", "/alerts.atom"): PUBLIC,
    ("GET", "/alerts/{id}.cap"): PUBLIC,
    ("GET", "/api/shelters"): "staff",
    ("POST", "/api/shelters/{id}/open"): "emergency",
    ("POST", "/api/shelters/{id}/close"): "emergency",
    ("GET", "/console/shelters"): "emergency",
    ("POST", "/console/shelters/{id}/open"): "emergency",
    ("POST", "/console/shelters/{id}/close"): "emergency",
    ("POST", "/api/announcements"): "staff",
    ("GET", "/api/announcements"): "staff",
    ("GET", "/api/announcements/{id}"): "staff",
    ("DELETE", "/api/announcements/{id}"): "staff",
    ("GET", "/api/intake/rejected"): "staff",
    ("POST", "/api/subscribers"): "admin",  # staff only for channel print, checked below
    ("GET", "/api/subscribers/{id}"): "admin",
    ("DELETE", "/api/subscribers/{id}"): "admin",
    ("POST", "/api/alerts"): "emergency",
    ("GET", "/api/alerts"): "staff",
    ("GET", "/api/alerts/{id}"): "staff",
    ("POST", "/api/alerts/{id}/cancel"): "emergency",
    ("POST", "/api/alerts/{id}/approve"): "emergency",
    ("GET", "/api/drafts"): "emergency",
    ("GET", "/api/drafts/{id}"): "emergency",
    ("POST", "/api/drafts/{id}/approve"): "emergency",
    ("POST", "/api/drafts/{id}/dismiss"): "emergency",
    ("GET", "/api/audit"): "admin",
    ("GET", "/api/openapi.json"): PUBLIC,  # the API's description, for integrators
    ("POST", "/line/webhook"): PUBLIC,  # LINE's signature instead (tests/…/test_line_webhook)
    ("GET", "/subscribe"): PUBLIC,
    ("POST", "/subscribe"): PUBLIC,
    ("GET", "/subscribe/confirm/{token}"): PUBLIC,
    ("GET", "/subscribe/settings/{token}"): PUBLIC,  # the resident's own token instead
    ("POST", "/subscribe/settings/{token}"): PUBLIC,
    ("GET", "/unsubscribe/{token}"): PUBLIC,
    ("POST", "/unsubscribe/{token}"): PUBLIC,
    ("GET", "/console"): PUBLIC,  # a redirect to the notices
    ("GET", "/console/signin"): PUBLIC,
    ("POST", "/console/signin"): PUBLIC,
    ("POST", "/console/signout"): SIGNED,
    ("GET", "/console/notices"): "staff",
    ("GET", "/console/notices/progress"): "staff",
    ("POST", "/console/notices/{id}/cancel"): "staff",
    ("GET", "/console/compose"): "staff",
    ("POST", "/console/compose"): "staff",
    ("POST", "/console/preview"): "staff",
    ("GET", "/console/emergency"): "emergency",
    ("POST", "/console/emergency/confirm"): "emergency",
    ("POST", "/console/emergency/issue"): "emergency",
    ("POST", "/console/alerts/{id}/cancel"): "emergency",
    ("POST", "/console/alerts/{id}/approve"): "emergency",
    ("POST", "/console/drafts/{id}/approve"): "emergency",
    ("POST", "/console/drafts/{id}/dismiss"): "emergency",
    ("GET", "/console/subscribers"): "admin",
    ("POST", "/console/subscribers/print"): "admin",
    ("GET", "/console/audit"): "admin",
    ("GET", "/console/static/{filename}"): PUBLIC,
}


def routes(runtime: Runtime) -> set[tuple[str, str]]:
    found = set()
    for route in make_app(runtime).router.routes():
        if route.method == "HEAD":
            continue
        info = route.get_info()
        path = info.get("formatter") or info.get("path") or info.get("prefix", "") + "/{filename}"
        found.add((route.method, path))
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "console.js" if m[1] == "filename" else "0123abcd", path)


async def test_every_route_is_in_the_table(runtime: Runtime) -> None:
    assert routes(runtime) == set(ROUTES)


async def test_every_api_route_refuses_no_token_and_the_wrong_role(
    service: Service, tokens: dict[str, str]
) -> None:
    base = f"http://127.0.0.1:{service.port}"
    async with aiohttp.ClientSession() as http:
        for (method, path), needs in ROUTES.items():
            if not path.startswith("/api/") or needs == PUBLIC:
                continue
            url = base + concrete(path)
            async with http.request(method, url, json={}) as r:
                assert r.status == 401, (method, path, "no token")
            for role in ROLES:
                headers = {"Authorization": f"Bearer {tokens[role]}"}
                async with http.request(method, url, json={}, headers=headers) as r:
                    allowed = needs in GRANTS[role]
                    assert (r.status == 403) != allowed, (method, path, role, r.status)
                    assert r.status != 401, (method, path, role)
        staff = {"Authorization": f"Bearer {tokens['staff']}"}
        offline = {"channel": "print", "address": "東京都練馬区豊玉北6-12-1", "name": "練馬 花子"}
        async with http.post(base + "/api/subscribers", json=offline, headers=staff) as r:
            assert r.status == 201  # staff register offline residents for print


async def test_every_console_route_refuses_no_session_and_the_wrong_role(
    service: Service, runtime: Runtime, tokens: dict[str, str]
) -> None:
    base = f"http://127.0.0.1:{service.port}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        nobody = Console(http, base)
        for (method, path), needs in ROUTES.items():
            if not path.startswith("/console") or needs == PUBLIC:
                continue
            if method == "GET":
                status, _, r = await nobody.get(concrete(path))
                assert status == 303, (path, status)
                assert r.headers["Location"].startswith("/console/signin?next=")
            else:
                status, _, _ = await nobody.post(concrete(path), csrf="")
                assert status == 401, (path, status)
    for role in ROLES:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            console = Console(http, base)
            assert (await console.sign_in(token=tokens[role])).status == 303
            await console.get("/console/notices" if role != "emergency" else "/console/emergency")
            for (method, path), needs in ROUTES.items():
                if not path.startswith("/console") or needs in (PUBLIC, SIGNED):
                    continue
                if method == "GET":
                    status, _, _ = await console.get(concrete(path))
                else:
                    status, _, _ = await console.post(concrete(path))
                allowed = needs in GRANTS[role]
                assert (status == 403) != allowed, (method, path, role, status)
                assert status != 401, (method, path, role)
                if method == "GET" and allowed:
                    assert status == 200, (path, role, status)


def test_the_table_names_only_known_roles() -> None:
    assert set(ROUTES.values()) <= {*ROLES, PUBLIC, SIGNED}
