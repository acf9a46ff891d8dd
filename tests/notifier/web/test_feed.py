"""The public feed: /alerts.atom (Atom 1.0, each entry its CAP 1.2 document) and
/alerts/{id}.cap — what is in it, the references chain, schema validity, caching, and no
personal data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from lxml import etree
from multidict import CIMultiDict

from notifier.cap import NS, _schema, parse
from notifier.cap_out import Published
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.web.feed import MAX_ENTRIES, WINDOW, choose
from tests.conftest import Api, announcement, make_settings
from tests.notifier.test_pipeline import add
from tests.notifier.web.test_alerts import alert, done

ATOM = "http://www.w3.org/2005/Atom"
A = {"a": ATOM, "c": NS}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
RESIDENT_LINE = "U" + "d" * 32
RESIDENT_MAIL = "hanako@example.jp"


async def fetch(api: Api, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with api.session.get(api.base + path, headers=headers) as response:
        return response.status, response.headers.copy(), await response.read()


def check_atom(feed: Any) -> None:
    """RFC 4287's required elements: the feed's id, title, updated (and an author, as no
    entry has its own); each entry's id, title, updated, and content or an alternate link."""
    assert feed.tag == f"{{{ATOM}}}feed"
    for name in ("id", "title", "updated"):
        assert len(feed.findall(f"a:{name}", A)) == 1, name
    assert feed.findtext("a:author/a:name", namespaces=A)
    assert RFC3339.match(feed.findtext("a:updated", namespaces=A))
    for entry in feed.findall("a:entry", A):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"a:{name}", A)) == 1, name
        assert RFC3339.match(entry.findtext("a:updated", namespaces=A))
        content = entry.find("a:content", A)
        assert content is not None and content.get("type") == "application/cap+xml"
        assert len(content) == 1  # an XML media type: exactly one child element
        link = entry.find("a:link[@rel='alternate']", A)
        assert link is not None and link.get("type") == "application/cap+xml"


async def test_an_alert_its_update_and_all_clear_are_in_the_feed_as_valid_cap(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    await add(runtime, channel="line", address=RESIDENT_LINE, areas=["shakujii"])
    await add(runtime, channel="email", address=RESIDENT_MAIL, name="練馬 花子")
    desk = tokens["emergency"]
    english = {"en": {"title": "Evacuation order", "body": "Leave now for the shelter."}}
    first_alert = alert(areas=["shakujii"], level=3, hazard="flood", translations=english)
    first_alert.pop("severity")  # the level's
    _, first = await api.call("POST", "/api/alerts", desk, first_alert)
    await done(api, desk, first["id"])
    update = alert(areas=["shakujii"], level=4, hazard="flood", supersedes=first["id"])
    _, second = await api.call("POST", "/api/alerts", desk, update)
    await done(api, desk, second["id"])
    _, clear = await api.call("POST", f"/api/alerts/{second['id']}/cancel", desk)
    await done(api, desk, clear["id"])
    _, drill = await api.call("POST", "/api/alerts?drill=true", desk, alert(title="訓練の避難指示"))
    await done(api, desk, drill["id"])

    status, headers, body = await fetch(api, "/alerts.atom")  # no token
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/atom+xml")
    feed = etree.fromstring(body)
    check_atom(feed)
    entries = feed.findall("a:entry", A)
    ids = [e.findtext("a:content/c:alert/c:identifier", namespaces=A) for e in entries]
    assert ids == [clear["id"], second["id"], first["id"]]  # newest first, not the drill
    assert feed.findtext("a:updated", namespaces=A) == entries[0].findtext(
        "a:updated", namespaces=A
    )

    sender = urlsplit(settings.public_url).netloc  # the host of the public address
    documents = {}
    for entry, alert_id in zip(entries, ids, strict=True):
        cap = entry.find("a:content/c:alert", A)
        assert _schema().validate(cap), _schema().error_log
        documents[alert_id] = cap
        href = entry.find("a:link[@rel='alternate']", A).get("href")
        assert href == f"{settings.public_url}/alerts/{alert_id}.cap"
        status, _, raw = await fetch(api, f"/alerts/{alert_id}.cap")
        assert status == 200
        alone = etree.fromstring(raw)
        assert _schema().validate(alone)
        assert etree.tostring(alone, method="c14n", exclusive=True) == etree.tostring(
            cap, method="c14n", exclusive=True
        )

    def text(alert_id: str, path: str) -> str | None:
        return documents[alert_id].findtext(path, namespaces=A)

    def sent(alert_id: str) -> str:
        return text(alert_id, "c:sent") or ""

    assert [text(i, "c:msgType") for i in ids] == ["Cancel", "Update", "Alert"]
    assert text(first["id"], "c:references") is None
    assert text(second["id"], "c:references") == f"{sender},{first['id']},{sent(first['id'])}"
    assert text(clear["id"], "c:references") == (
        f"{sender},{first['id']},{sent(first['id'])} {sender},{second['id']},{sent(second['id'])}"
    )
    first_cap = documents[first["id"]]
    languages = [i.findtext("c:language", namespaces=A) for i in first_cap.findall("c:info", A)]
    assert languages == ["ja", "en"]
    assert text(first["id"], "c:info/c:parameter[c:valueName='警戒レベル']/c:value") == "3"
    assert text(second["id"], "c:info/c:parameter/c:value") == "4"
    assert text(first["id"], "c:info/c:severity") == "Severe"  # level 3's warning
    assert text(second["id"], "c:info/c:severity") == "Extreme"
    assert text(first["id"], "c:info/c:area/c:areaDesc") == "石神井地域"
    # what we write, we read back: the level and the hazard too
    back = parse(etree.tostring(first_cap), settings.ward, settings.cap_max_bytes)
    assert (back.alert["level"], back.alert["hazard"], back.alert["areas"]) == (
        3,
        "flood",
        ["shakujii"],
    )

    # no personal data: no resident, no staff member, no token
    for secret in (RESIDENT_LINE, RESIDENT_MAIL, "花子", "emergency-tester", desk):
        assert secret.encode() not in body
    drill_cap = await fetch(api, f"/alerts/{drill['id']}.cap")
    assert drill_cap[0] == 404


async def test_the_feed_answers_304_while_it_has_not_changed(
    api: Api, tokens: dict[str, str]
) -> None:
    desk = tokens["emergency"]
    _, first = await api.call("POST", "/api/alerts", desk, alert())
    await done(api, desk, first["id"])  # its record changes no more: Last-Modified holds
    status, headers, _ = await fetch(api, "/alerts.atom")
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert status == 200 and etag.startswith('"')
    assert (await fetch(api, "/alerts.atom", **{"If-None-Match": etag}))[0] == 304
    assert (await fetch(api, "/alerts.atom", **{"If-Modified-Since": modified}))[0] == 304
    assert (await fetch(api, "/alerts.atom", **{"If-None-Match": '"other"'}))[0] == 200
    cap_status, cap_headers, _ = await fetch(api, f"/alerts/{first['id']}.cap")
    assert cap_status == 200
    again = await fetch(api, f"/alerts/{first['id']}.cap", **{"If-None-Match": cap_headers["ETag"]})
    assert again[0] == 304

    _, second = await api.call("POST", "/api/alerts", desk, alert(title="避難指示（続報）"))
    status, headers, body = await fetch(api, "/alerts.atom", **{"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag
    assert second["id"].encode() in body


async def test_alerts_waiting_for_approval_withdrawn_or_unknown_are_not_public(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    status, notice = await api.call("POST", "/api/announcements", tokens["staff"], announcement())
    assert status == 202, notice
    for path in (f"/alerts/{notice['id']}.cap", "/alerts/nosuchalert.cap"):
        assert (await fetch(api, path))[0] == 404
    status, _, body = await fetch(api, "/alerts.atom")
    assert status == 200
    assert etree.fromstring(body).findall("a:entry", A) == []


def published(alert_id: str, sent: datetime) -> Published:
    return Published(alert_id, {"title": "t", "body": "b", "severity": "warning"}, sent)


def test_the_feed_holds_active_alerts_and_the_last_7_days_newest_first_at_most_50() -> None:
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    old_active = published("old_active", now - timedelta(days=30))
    old_done = published("old_done", now - timedelta(days=8))
    recent = [published(f"r{n}", now - timedelta(minutes=n)) for n in range(60)]
    states = {"old_active": "active", "old_done": "cancelled"} | {
        a.id: "superseded" for a in recent
    }
    shown, updated = choose([old_done, old_active, *recent], states, now)
    assert [a.id for a in shown] == [f"r{n}" for n in range(MAX_ENTRIES)]
    assert updated == now  # r0, sent just now
    shown, updated = choose([old_done, old_active], states, now)
    assert [a.id for a in shown] == ["old_active"]
    assert updated == old_done.sent + WINDOW  # when the cancelled one left the feed
    assert choose([], {}, now) == ([], datetime(1970, 1, 1, tzinfo=UTC))


async def test_the_feed_is_rate_limited_per_address(tmp_path: Path, prefix: str) -> None:
    settings = make_settings(tmp_path, prefix, api_rate_per_ip=2)
    service = Service(settings, grace=5.0)
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{service.port}")
            answers = [(await fetch(api, "/alerts.atom"))[:2] for _ in range(3)]
    finally:
        await service.stop()
    assert [status for status, _ in answers] == [200, 200, 429]
    assert int(answers[2][1]["Retry-After"]) >= 1
