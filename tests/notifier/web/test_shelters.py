"""Shelters on the web: the desk opens and closes them (API and console; role
emergency; audited; a clear 404), and /shelters shows anyone the open ones."""

from __future__ import annotations

import re

import pytest

from notifier.hazards import HAZARDS
from notifier.runtime import Runtime
from notifier.shelters import ShelterStore, parse_csv
from notifier.web.shelters import HAZARD_NAMES
from tests.conftest import Api
from tests.notifier.test_shelters import HALL, PARK, SCHOOL, csv_of
from tests.notifier.web.test_console import Console
from tests.notifier.web.test_console import console as console  # the fixture


@pytest.fixture
async def shelters(runtime: Runtime) -> ShelterStore:
    store = ShelterStore(runtime.redis, runtime.keys, runtime.settings.ward)
    await store.replace(parse_csv(csv_of(SCHOOL, PARK, HALL), store.ward))
    return store


def test_the_hazards_residents_read_are_the_standards_words() -> None:
    assert HAZARD_NAMES == HAZARDS


async def test_the_desk_opens_and_closes_a_shelter_and_each_change_is_audited(
    api: Api, runtime: Runtime, tokens: dict[str, str], shelters: ShelterStore
) -> None:
    status, body = await api.call("POST", "/api/shelters/2/open", tokens["emergency"])
    assert status == 200
    assert body["id"] == "2" and body["open"] is True and body["area"] == "hikarigaoka"
    assert body["opened_at"].endswith("+09:00")  # in the ward's time zone
    assert body["map_url"] == "https://maps.gsi.go.jp/#17/35.762800/139.629000/"
    assert [s.id for s in await shelters.open_for([], None)] == ["2"]

    status, body = await api.call("GET", "/api/shelters", tokens["staff"])
    assert status == 200
    assert [(s["id"], s["open"]) for s in body["shelters"]] == [
        ("1", False),
        ("2", True),
        ("3", False),
    ]
    status, body = await api.call("POST", "/api/shelters/2/close", tokens["emergency"])
    assert status == 200 and body["open"] is False and body["opened_at"] is None
    assert await shelters.open_for([], None) == []

    entries = await runtime.audit.recent()
    done = [(e["action"], e["target"], e["outcome"], e["who"]) for e in entries]
    assert done == [
        ("shelter.close", "2", "ok", "emergency-tester"),
        ("shelter.open", "2", "ok", "emergency-tester"),
    ]


async def test_only_the_emergency_role_opens_shelters(
    api: Api, runtime: Runtime, tokens: dict[str, str], shelters: ShelterStore
) -> None:
    assert (await api.call("POST", "/api/shelters/1/open"))[0] == 401
    assert (await api.call("GET", "/api/shelters"))[0] == 401
    status, body = await api.call("POST", "/api/shelters/1/open", tokens["staff"])
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await api.call("POST", "/api/shelters/1/close", tokens["staff"])
    assert status == 403
    assert (await api.call("POST", "/api/shelters/1/open", tokens["admin"]))[0] == 200
    entries = await runtime.audit.recent()
    assert [(e["action"], e["target"], e["outcome"]) for e in entries] == [
        ("shelter.open", "1", "ok"),
        ("shelter.close", "1", "forbidden"),
        ("shelter.open", "1", "forbidden"),
    ]


async def test_an_unknown_shelter_is_a_clear_404_and_opens_nothing(
    api: Api, runtime: Runtime, tokens: dict[str, str], shelters: ShelterStore
) -> None:
    status, body = await api.call("POST", "/api/shelters/99/open", tokens["emergency"])
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert "no such shelter" in body["error"]["message"]
    assert await shelters.get("99") is None
    (entry,) = await runtime.audit.recent()
    assert (entry["action"], entry["target"], entry["outcome"]) == (
        "shelter.open",
        "99",
        "not_found",
    )


async def test_the_console_page_opens_and_closes_with_the_forms_csrf(
    console: Console, runtime: Runtime, tokens: dict[str, str], shelters: ShelterStore
) -> None:
    await runtime.accounts.create("jiro", "staff", "correct horse battery staple")
    await console.sign_in(name="jiro", password="correct horse battery staple")
    status, page, _ = await console.get("/console/shelters")
    assert status == 403 and "危機管理" in page  # staff may not
    await console.post("/console/signout")

    await console.sign_in(token=tokens["emergency"])
    status, page, _ = await console.get("/console/shelters")
    assert status == 200 and 'href="/console/shelters" aria-current="page"' in page
    assert page.count("開設する</button>") == 3
    status, _, _ = await console.post("/console/shelters/3/open", csrf="forged")
    assert status == 403 and await shelters.open_for([], None) == []

    status, _, r = await console.post("/console/shelters/3/open")
    assert status == 303 and r.headers["Location"] == "/console/shelters?done=opened#shelter-3"
    assert [s.id for s in await shelters.open_for(["oizumi"], "flood")] == ["3"]
    status, page, _ = await console.get("/console/shelters?done=opened")
    assert "開設しました。" in page and page.count("閉鎖する</button>") == 1
    status, _, _ = await console.post("/console/shelters/3/close")
    assert status == 303 and await shelters.open_for([], None) == []
    status, page, _ = await console.post("/console/shelters/nope/open")
    assert status == 404 and "見つかりません" in page

    entries = await runtime.audit.recent()
    done = [(e["action"], e["target"], e["outcome"]) for e in entries[:4]]
    assert done == [
        ("shelter.open", "nope", "not_found"),
        ("shelter.close", "3", "ok"),
        ("shelter.open", "3", "ok"),
        ("console.refused", "/console/shelters/3/open", "bad_csrf"),
    ]


async def test_the_public_page_shows_only_the_open_shelters_without_script(
    api: Api, shelters: ShelterStore
) -> None:
    status, page = await api.call("GET", "/shelters?lang=ja")
    assert status == 200 and "いま開設している避難所はありません。" in page
    await shelters.set_open("1", True)
    await shelters.set_open("3", True)
    status, page = await api.call("GET", "/shelters?lang=ja")
    assert status == 200
    assert "練馬第一小学校" in page and "大泉地区区民館" in page
    assert "光が丘公園" not in page  # closed
    assert "対象の災害：洪水・地震・内水氾濫" in page
    assert 'href="https://maps.gsi.go.jp/#17/35.737200/139.652100/"' in page
    assert page.index("練馬第一小学校") < page.index("大泉地区区民館")  # the ward's order
    assert not re.search(r"<script|\son\w+=|javascript:", page, re.IGNORECASE)
    assert "<form" not in page  # nothing to post: links only

    status, page = await api.call("GET", "/shelters?lang=en")
    assert '<html lang="en">' in page and "Open shelters" in page
    assert "For: Flood, Earthquake, Inland flooding" in page and "Oizumi" in page
    assert 'href="/shelters?lang=zh"' in page  # the language switch
