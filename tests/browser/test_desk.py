"""The emergency desk in Chromium: issue an alert through its confirmation step, update it,
call it off; and the page is closed to staff without the emergency role."""

from __future__ import annotations

import re

from playwright.async_api import expect

from notifier.runtime import Runtime
from tests.browser.conftest import Console, subscribe

HEADLINE = "練馬地域に避難指示"
WHAT_TO_DO = "石神井川が氾濫するおそれがあります。\n近くの避難所へ避難してください。"
NERIMA = [
    {"channel": "line", "address": "U" + "1" * 32, "areas": ["nerima"]},
    {"channel": "line", "address": "U" + "2" * 32},  # the whole ward
    {"channel": "line", "address": "U" + "3" * 32, "areas": ["oizumi"]},  # elsewhere
    {"channel": "email", "address": "bousai@example.jp", "areas": ["nerima"]},
]


async def test_the_emergency_desk_issues_an_alert_then_calls_it_off(
    console: Console, runtime: Runtime
) -> None:
    await subscribe(runtime, NERIMA)
    page = await console.signed_in("emergency")
    await page.get_by_role("link", name="緊急情報").click()
    await expect(page).to_have_url(re.compile(r"/console/emergency$"))
    await expect(page.get_by_text("発信中の警報はありません。")).to_be_visible()
    await page.get_by_label("緊急", exact=True).check()
    await page.get_by_label("見出し（100文字まで）").fill(HEADLINE)
    await page.get_by_label("何が起きたか・何をすべきか・どこへ行くか").fill(WHAT_TO_DO)
    await page.get_by_label("練馬", exact=True).check()
    await page.get_by_role("button", name="確認へ進む").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("この内容で発信しますか")
    await expect(page.locator(".card")).to_contain_text(HEADLINE)
    await expect(page.locator(".card")).to_contain_text("地域：練馬")
    audience = page.locator("table.audience")
    for channel, size in {
        "line": "2人",
        "email": "1人",
        "x": "公開の投稿（フォロワー全員）",
        "print": "掲示用チラシ 1地域",
    }.items():
        await expect(audience.locator(f'tr[data-channel="{channel}"] td')).to_have_text(size)
    assert await runtime.notices.list() == []  # nothing goes out before 発信する
    await console.shot(page, "confirm")
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
    await console.shot(page, "active")

    await active.get_by_role("link", name="更新する").click()  # an update starts from it
    await expect(page.get_by_role("heading", name="警報の更新")).to_be_visible()
    await expect(page.get_by_label("見出し（100文字まで）")).to_have_value(HEADLINE)
    await expect(page.get_by_label("緊急", exact=True)).to_be_checked()
    await page.get_by_role("link", name="緊急情報").click()

    await active.get_by_role("button", name="解除を発信").click()
    await expect(page).to_have_url(re.compile(r"/console/emergency\?done=all-clear$"))
    await expect(page.get_by_role("status")).to_have_text("解除を発信しました。")
    await expect(active).to_have_count(0)
    await expect(page.get_by_text("発信中の警報はありません。")).to_be_visible()
    await console.shot(page, "all-clear")
    all_clear, called_off = await runtime.notices.list()
    assert called_off["id"] == issued["id"] and called_off["state"] == "cancelled"
    assert all_clear["kind"] == "alert" and all_clear["state"] == "all-clear"
    assert all_clear["notice"]["type"] == "cancel"
    assert all_clear["notice"]["references"] == issued["id"]
    assert all_clear["status"] in ("queued", "dispatching", "done")


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
    await console.shot(page, "refused")
