"""An alert of 警戒レベル3 or above prints its flyers at once and, for the residents
registered by post in its areas, urgent mailing sheets (至急) to go out with them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from notifier.config import Settings
from notifier.runtime import Runtime
from tests.conftest import Api, wait_for


def text_of(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


async def issue(api: Api, token: str, level: int) -> dict[str, Any]:
    status, body = await api.call(
        "POST",
        "/api/alerts",
        token,
        json={
            "title": "石神井川の水位が上がっています",
            "body": "石神井川沿いの方は、近くの避難所へ避難してください。",
            "level": level,
            "areas": ["shakujii"],
            "channels": ["print"],
        },
    )
    assert status == 202, body

    async def done() -> dict[str, Any] | None:
        _, view = await api.call("GET", f"/api/alerts/{body['id']}", token)
        return view if view["status"] == "done" else None

    view: dict[str, Any] = await wait_for(done, timeout=60)
    return view


async def test_a_level_3_alert_prints_flyers_and_urgent_sheets_for_residents_by_post(
    api: Api, runtime: Runtime, tokens: dict[str, str], settings: Settings
) -> None:
    store = runtime.subscribers
    for name, area in (("練馬花子", "shakujii"), ("大泉一郎", "oizumi"), ("全域太郎", None)):
        sub = store.validate(
            {
                "channel": "print",
                "address": f"東京都練馬区{name[:2]}町1-2-3",
                "name": name,
                "areas": [area] if area else [],
            }
        )
        await store.save([sub])

    view = await issue(api, tokens["emergency"], 3)
    folder = settings.print_dir / "alerts"
    assert (folder / f"{view['id']}-shakujii.pdf").exists()
    sheets = text_of(folder / f"{view['id']}-shakujii-mail.pdf")
    assert sheets.count("至急") == 2  # the area's resident and the whole ward's, a page each
    assert "練馬花子 様" in sheets and "全域太郎 様" in sheets and "大泉一郎" not in sheets
    assert "【警戒レベル3】高齢者等避難" in sheets and "危険な場所から高齢者等は避難" in sheets
    assert "練馬区からの緊急のお知らせ在中（石神井地域）" in "".join(sheets.split())

    advisory = await issue(api, tokens["emergency"], 2)  # the JMA's information: no mail
    assert (folder / f"{advisory['id']}-shakujii.pdf").exists()
    assert not (folder / f"{advisory['id']}-shakujii-mail.pdf").exists()
