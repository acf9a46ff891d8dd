"""A JMA warning for the ward's area, as the JMA publishes it, becomes a draft at the desk;
approved, it goes out on every channel with its 警戒レベル and the open shelters
designated for its hazard, and its flyers are printed."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.runtime import Runtime
from notifier.service import Service
from notifier.shelters import Shelter
from tests.conftest import Api, make_settings, wait_for
from tests.notifier.test_jma_feed import FakeJma, jma  # noqa: F401  (the fake feed fixture)

LINE_USER = "U" + "e" * 32

SHELTERS = [
    Shelter(
        "s1",
        "石神井台小学校",
        "練馬区石神井台1-2-3",
        35.7432,
        139.5891,
        "shakujii",
        ("landslide", "earthquake"),
    ),
    Shelter("s2", "大泉中学校", "練馬区大泉町4-5-6", 35.7641, 139.6012, "oizumi", ("landslide",)),
    Shelter("s3", "練馬第一小学校", "練馬区練馬1-1-1", 35.7378, 139.6541, "nerima", ("flood",)),
]


@pytest.fixture
async def desk_service(tmp_path: Path, prefix: str, jma: FakeJma) -> Any:  # noqa: F811
    settings = make_settings(
        tmp_path, prefix, jma_feeds=[f"{jma.base}/feed.xml"], jma_areas=["0121400"]
    )
    service = Service(settings, grace=5.0)
    await service.start()
    yield service
    await service.stop()


async def test_a_jma_warning_is_drafted_approved_and_sent_with_its_level_and_shelters(
    desk_service: Service, tokens: dict[str, str], runtime: Runtime
) -> None:
    rt, settings = desk_service.runtime, desk_service.settings
    await rt.alerts.shelters.replace(SHELTERS)
    for shelter_id in ("s1", "s3"):  # s2 stays closed; s3 is not for landslides
        assert await rt.alerts.shelters.set_open(shelter_id, True)
    store = rt.subscribers
    for fields in (
        {"channel": "line", "address": LINE_USER},
        {"channel": "email", "address": "hanako@example.jp", "name": "練馬花子"},
    ):
        await store.save([store.validate(fields)])
    desk = tokens["emergency"]
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{desk_service.port}")

        async def drafted() -> list[dict[str, Any]]:
            _, body = await api.call("GET", "/api/drafts", desk)
            return list(body["drafts"])

        (draft,) = await wait_for(drafted)
        assert draft["state"] == "pending"
        assert draft["source"]["url"].endswith("/data/VPWW56.xml")
        assert draft["alert"]["level"] == 4 and draft["alert"]["hazard"] == "landslide"
        status, _ = await api.call("GET", "/api/alerts", desk)
        _, listed = await api.call("GET", "/api/alerts", desk)
        assert listed["alerts"] == []  # nothing goes out before the desk says so

        status, issued = await api.call("POST", f"/api/drafts/{draft['id']}/approve", desk)
        assert status == 202, issued
        status, again = await api.call("POST", f"/api/drafts/{draft['id']}/approve", desk)
        assert (status, again["id"]) == (202, issued["id"])  # approved twice: issued once

        async def done() -> dict[str, Any] | None:
            _, view = await api.call("GET", f"/api/alerts/{issued['id']}", desk)
            return view if view["status"] == "done" else None

        view = await wait_for(done, timeout=60)
        _, listed = await api.call("GET", "/api/alerts", desk)
        assert [a["id"] for a in listed["alerts"]] == [issued["id"]]
        _, after = await api.call("GET", f"/api/drafts/{draft['id']}", desk)
        assert (after["state"], after["alert_id"]) == ("approved", issued["id"])
        status, _ = await api.call("POST", f"/api/drafts/{draft['id']}/dismiss", desk)
        assert status == 409

    assert {c: view["progress"][c]["sent"] for c in ("line", "email")} == {"line": 1, "email": 1}
    outbox = settings.outbox_dir
    (line_file,) = (outbox / "line").glob("*.json")
    bubble = json.loads(line_file.read_text())["messages"][0]
    assert bubble["altText"].startswith("【警戒レベル4】避難指示")
    shown = json.dumps(bubble, ensure_ascii=False)
    assert "石神井台小学校" in shown and "大泉中学校" not in shown and "練馬第一小学校" not in shown
    (mail_file,) = (outbox / "email").glob("*.eml")
    with mail_file.open("rb") as fh:
        mail = email.message_from_binary_file(fh, policy=email.policy.default)
    assert str(mail["Subject"]).startswith("【警戒レベル4】避難指示")
    (x_file,) = (outbox / "x").glob("*.json")
    posts = [body["text"] for body in json.loads(x_file.read_text())]  # one, or a thread
    assert posts[0].startswith("【警戒レベル4】避難指示") and "/shelters" in "".join(posts)
    flyers = sorted((settings.print_dir / "alerts").glob(f"{issued['id']}-*.pdf"))
    assert [f.name for f in flyers] == [
        f"{issued['id']}-{a}.pdf" for a in sorted(settings.ward.area_codes)
    ]
    text = subprocess.run(
        ["pdftotext", str(flyers[0]), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "警戒レベル4" in text and "石神井台小学校" in text
