"""The emergency desk in Chromium, as the README's tour goes: issue an alert through its
confirmation step, update it to more areas, call it off, and read it all back in the list;
and the page is closed to staff without the emergency role."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from playwright.async_api import Locator, Page, expect

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.when import local_time
from tests.browser.conftest import Console, subscribe

HEADLINE = "練馬地域に避難指示"
WHAT_TO_DO = "石神井川が氾濫するおそれがあります。\n近くの避難所へ避難してください。"
WIDER = "避難指示（対象地域拡大）"
WIDER_TEXT = "石神井地域にも避難指示を出しました。"
TITLE_FIELD = "見出し（100文字まで）"
BODY_FIELD = "何が起きたか・何をすべきか・どこへ行くか"
RESIDENTS = [
    {"channel": "line", "address": "U" + "1" * 32, "areas": ["nerima"]},
    {"channel": "line", "address": "U" + "2" * 32},  # the whole ward
    {"channel": "line", "address": "U" + "3" * 32, "areas": ["oizumi"]},  # elsewhere
    {"channel": "line", "address": "U" + "4" * 32, "areas": ["shakujii"]},  # the update's
    {"channel": "email", "address": "bousai@example.jp", "areas": ["nerima"]},
]


async def marks(shown: Locator) -> list[str]:
    """The marks before a title (緊急, 更新, 解除 …), in order."""
    return [text.strip() for text in await shown.locator(".tag").all_inner_texts()]


async def audience(page: Page, expected: dict[str, str]) -> None:
    table = page.locator("table.audience")
    for channel, size in expected.items():
        await expect(table.locator(f'tr[data-channel="{channel}"] td')).to_have_text(size)


async def issued_at(card: Locator, record: dict[str, Any], settings: Settings) -> None:
    """The card says when the alert went out, in the ward's time and words."""
    made = datetime.fromisoformat(record["created"])
    await expect(card.locator(".created")).to_have_text(local_time(made, settings.tz, year=True))


async def test_the_emergency_desk_issues_an_alert_updates_it_then_calls_it_off(
    console: Console, runtime: Runtime, settings: Settings
) -> None:
    await subscribe(runtime, RESIDENTS)
    page = await console.signed_in("emergency")
    await page.get_by_role("link", name="緊急情報").click()
    await expect(page).to_have_url(re.compile(r"/console/emergency$"))
    await expect(page.get_by_text("発信中の警報はありません。")).to_be_visible()
    await page.get_by_role("button", name="確認へ進む").click()  # nothing filled in yet
    await expect(page.locator("#error-title")).to_have_text(
        "見出しは改行や特殊な文字を含めず、1〜100文字で入力してください。"
    )
    await expect(page.locator("#error-body")).to_contain_text(f"「{BODY_FIELD}」は")
    await console.step(page, "errors")

    await page.get_by_label("緊急", exact=True).check()
    await page.get_by_label(TITLE_FIELD).fill(HEADLINE)
    await page.get_by_label(BODY_FIELD).fill(WHAT_TO_DO)
    await page.get_by_label("練馬", exact=True).check()
    await page.get_by_role("button", name="確認へ進む").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("この内容で発信しますか")
    card = page.locator(".card")
    await expect(card).to_contain_text(HEADLINE)
    await expect(card).to_contain_text("地域：練馬")
    assert await marks(card) == ["緊急"]
    await audience(
        page,
        {
            "line": "2人",
            "email": "1人",
            "x": "公開の投稿（フォロワー全員）",
            "print": "掲示用チラシ 1地域",
        },
    )
    assert await runtime.notices.list() == []  # nothing goes out before 発信する
    await console.step(page, "confirm")
    await page.get_by_role("button", name="発信する").click()

    await expect(page).to_have_url(re.compile(r"/console/emergency\?done=queued$"))
    await expect(page.get_by_role("status")).to_have_text("発信しました。")
    (issued,) = await runtime.notices.list()
    assert issued["kind"] == "alert" and issued["state"] == "active"
    assert issued["notice"]["areas"] == ["nerima"] and issued["notice"]["severity"] == "emergency"
    assert issued["notice"]["title"] == HEADLINE and issued["notice"]["body"] == WHAT_TO_DO
    active = page.locator(f"#alert-{issued['id']}")
    await expect(active).to_contain_text(HEADLINE)
    await expect(active).to_contain_text("発信中")
    assert await marks(active) == ["緊急"]
    await issued_at(active, issued, settings)
    bullet = await active.evaluate("card => getComputedStyle(card).listStyleType")
    assert bullet == "none"  # a card, not a list item with a dot before it
    await console.step(page, "active")

    await active.get_by_role("link", name="更新する").click()  # an update starts from it
    await expect(page.get_by_role("heading", name="警報の更新")).to_be_visible()
    await expect(page.get_by_label(TITLE_FIELD)).to_have_value(HEADLINE)
    await expect(page.get_by_label(BODY_FIELD)).to_have_value(WHAT_TO_DO)
    await expect(page.get_by_label("緊急", exact=True)).to_be_checked()
    await expect(page.get_by_label("練馬", exact=True)).to_be_checked()
    await page.get_by_label(TITLE_FIELD).fill(WIDER)
    await page.get_by_label(BODY_FIELD).fill(WIDER_TEXT)
    await page.get_by_label("石神井", exact=True).check()
    await console.step(page, "update-form")
    await page.get_by_role("button", name="確認へ進む").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("この内容で発信しますか")
    await expect(card).to_contain_text(WIDER)
    await expect(card).to_contain_text("地域：練馬・石神井")
    assert await marks(card) == ["緊急", "更新"]
    await audience(page, {"line": "3人", "email": "1人", "print": "掲示用チラシ 2地域"})
    await console.step(page, "update-confirm")
    await page.get_by_role("button", name="発信する").click()

    await expect(page).to_have_url(re.compile(r"/console/emergency\?done=queued$"))
    update, first = await runtime.notices.list()
    assert first["id"] == issued["id"] and first["state"] == "superseded"
    assert update["state"] == "active" and update["notice"]["type"] == "update"
    assert update["notice"]["references"] == issued["id"]
    assert update["notice"]["areas"] == ["nerima", "shakujii"]
    await expect(active).to_have_count(0)  # the update replaced it
    wider = page.locator(f"#alert-{update['id']}")
    await expect(wider).to_contain_text(WIDER)
    assert await marks(wider) == ["緊急", "更新"]
    await issued_at(wider, update, settings)
    await console.step(page, "updated")

    await wider.get_by_role("button", name="解除を発信").click()
    await expect(page).to_have_url(re.compile(r"/console/emergency\?done=all-clear$"))
    await expect(page.get_by_role("status")).to_have_text("解除を発信しました。")
    await expect(wider).to_have_count(0)
    await expect(page.get_by_text("発信中の警報はありません。")).to_be_visible()
    await console.step(page, "all-clear")
    all_clear, called_off, _ = await runtime.notices.list()
    assert called_off["id"] == update["id"] and called_off["state"] == "cancelled"
    assert all_clear["kind"] == "alert" and all_clear["state"] == "all-clear"
    assert all_clear["notice"]["type"] == "cancel"
    assert all_clear["notice"]["references"] == update["id"]

    await page.get_by_role("link", name="お知らせ一覧").click()  # the three, as staff see them
    rows = {
        record["id"]: page.locator(f"#notice-{record['id']}")
        for record in (issued, update, all_clear)
    }
    for record_id, row in rows.items():
        await expect(row.locator(".status")).to_have_text("完了")
        record = await runtime.notices.get(record_id)
        assert record is not None
        await issued_at(row, record, settings)
    await expect(rows[issued["id"]].locator(".state")).to_have_text("警報：更新済み（新しい版）")
    await expect(rows[update["id"]].locator(".state")).to_have_text("警報：解除済み（解除の発信）")
    assert await marks(rows[update["id"]]) == ["緊急", "更新"]
    assert await marks(rows[all_clear["id"]]) == ["解除"]
    await console.step(page, "notices")

    admin = await console.signed_in("admin")  # what the audit log kept of it, and when
    await admin.get_by_role("link", name="操作記録").click()
    entries = await runtime.audit.recent(200)
    latest = admin.locator("table.audit tbody tr").first
    when = datetime.fromtimestamp(entries[0]["at"], settings.tz)
    await expect(latest.locator("td").first).to_have_text(local_time(when, settings.tz, year=True))
    for action in ("alert.issue", "alert.cancel"):
        await expect(admin.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    await console.step(admin, "audit")


async def test_staff_without_the_emergency_role_see_no_desk(console: Console) -> None:
    page = await console.signed_in("staff")
    menu = page.get_by_role("navigation", name="メニュー")
    await expect(menu.get_by_role("link", name="作成")).to_be_visible()
    await expect(menu.get_by_role("link", name="緊急情報")).to_have_count(0)
    response = await page.goto("/console/emergency")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("alert")).to_have_text(
        "このページは「危機管理」の権限が必要です。"
    )
    await console.step(page, "refused")
