"""The console in Chromium: sign in, compose with previews, send and watch it complete,
schedule and cancel, and the compose page at desktop and tablet widths."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from playwright.async_api import Page, expect

from channels.x_text import LIMIT, weight
from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.when import local_time
from tests.browser.conftest import DESKTOP, PASSWORD, TABLET, Console, subscribe

TITLE = "粗大ごみの収集日が変わります"
BODY = "12月から粗大ごみの収集日が変わります。\n\nくわしくはホームページをご覧ください。"
TITLE_FIELD = "件名（100文字まで）"
BODY_FIELD = "本文（5,000文字まで）"
URL = "https://www.city.nerima.tokyo.jp/kurashi/gomi/"
WARD_TIME = re.compile(r"\d{1,2}月\d{1,2}日（[月火水木金土日]）午[前後]\d{1,2}時\d\d分")
AUDIENCE: list[dict[str, Any]] = [
    {"channel": "line", "address": "U" + "a" * 32, "areas": ["nerima"]},
    {"channel": "line", "address": "U" + "b" * 32, "topics": ["garbage"]},
    {"channel": "line", "address": "U" + "c" * 32},
    {"channel": "email", "address": "taro@example.jp", "name": "山田太郎"},
    {"channel": "email", "address": "hana@example.jp", "topics": ["garbage"]},
    {"channel": "line", "address": "U" + "d" * 32, "topics": ["events"]},  # another topic
]


async def write_notice(page: Page, title: str = TITLE) -> None:
    await page.get_by_label(TITLE_FIELD).fill(title)
    await page.get_by_label(BODY_FIELD).fill(BODY)
    await page.get_by_label("ごみ・リサイクル").check()


async def no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url}: {widths[0]}px wide in a {widths[1]}px window"


async def test_staff_sign_in_compose_with_previews_send_and_watch_it_complete(
    console: Console, runtime: Runtime, settings: Settings
) -> None:
    tz = settings.tz
    await subscribe(runtime, AUDIENCE)
    await runtime.accounts.create("yamada", "staff", PASSWORD)
    # LINE holds its batches, as under a rate limit, until the list shows the notice under
    # way; held from the start, so that the worker has seen it before the notice comes
    held = runtime.keys.paused("line")
    await runtime.redis.set(held, "held by the test", px=60_000)
    page = await console.page()

    await page.goto("/console/compose")  # not signed in: to the sign-in page, and back after
    await expect(page).to_have_url(re.compile(r"/console/signin\?next=/console/compose$"))
    await console.sign_in(page, "yamada", "not-the-password")
    await expect(page.locator("#signin-error")).to_have_text(
        "名前とパスワード、またはトークンが違います。"
    )
    await console.step(page, "wrong-password")
    await console.sign_in(page, "yamada", PASSWORD)
    await expect(page).to_have_url(re.compile(r"/console/compose$"))
    await expect(page.get_by_text("yamada（職員）")).to_be_visible()

    await write_notice(page)
    await page.get_by_label("リンク（任意）").fill(URL)
    previews = page.locator("#previews")
    await expect(previews.locator("#preview-line .bubble")).to_contain_text(TITLE)
    await expect(previews.locator("#preview-line .alt-text")).to_contain_text(TITLE)
    post = previews.locator("#preview-x .post").first
    await expect(post.locator(".post-text")).to_contain_text(TITLE)
    await expect(post.locator(".counter")).to_have_text(re.compile(rf"^\d+ / {LIMIT}$"))
    counted = int((await post.locator(".counter").inner_text()).split("/")[0])
    assert counted == weight(await post.locator(".post-text").inner_text()) <= LIMIT
    await expect(previews.locator("#preview-email .subject")).to_contain_text(TITLE)
    mail = page.frame_locator("#preview-email iframe")
    await expect(mail.get_by_role("heading", name=TITLE)).to_be_visible()
    await console.shot(page.locator("#preview-email"), "email")
    await expect(previews.locator("#preview-print .paper")).to_contain_text(TITLE)
    await expect(previews.locator("#preview-print .paper")).to_contain_text(WARD_TIME)
    await console.step(page, "previews")

    title_error = page.locator("#error-title")
    await page.get_by_label(TITLE_FIELD).fill("")
    await expect(title_error).to_have_text(
        "件名は改行や特殊な文字を含めず、1〜100文字で入力してください。"
    )
    await expect(title_error).to_be_visible()
    await console.step(page, "title-missing")
    await page.get_by_label(TITLE_FIELD).fill(TITLE)
    await expect(title_error).to_be_empty()
    await expect(title_error).to_be_hidden()
    await expect(previews.locator("#preview-line")).to_be_visible()

    await page.get_by_role("button", name="送信する").click()
    await expect(page).to_have_url(re.compile(r"/console/notices\?done=queued$"))
    await expect(page.get_by_role("status")).to_have_text("受け付けました。配信を始めます。")
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads
    (notice,) = await runtime.notices.list()
    row = page.locator(f"#notice-{notice['id']}")
    made = datetime.fromisoformat(notice["created"])  # 2026年12月2日（水）午後3時57分
    await expect(row.locator(".created")).to_have_text(local_time(made, tz, year=True))
    await expect(row.locator(".status")).to_have_attribute("data-status", "dispatching")
    await expect(row.locator(".status")).to_have_text("配信中")
    await expect(row.locator('.count[data-channel="email"]')).to_have_text("2/2")
    await expect(row.locator('.count[data-channel="line"]')).to_have_text("0/3")
    await console.step(page, "delivering")
    await runtime.redis.delete(held)
    await expect(row.locator(".status")).to_have_attribute("data-status", "done")
    await expect(row.locator(".status")).to_have_text("完了")
    for channel, recipients in {"line": 3, "email": 2}.items():
        bar = row.locator(f'progress[data-channel="{channel}"]')
        await expect(bar).to_have_js_property("max", recipients)
        await expect(bar).to_have_js_property("value", recipients)
        count = row.locator(f'.count[data-channel="{channel}"]')
        await expect(count).to_have_text(f"{recipients}/{recipients}")
    assert await page.evaluate("window.sameDocument") is True
    await console.step(page, "done")
    delivered = await runtime.notices.get(notice["id"])
    assert delivered is not None and delivered["status"] == "done"
    assert delivered["progress"]["line"]["sent"] == 3


async def test_a_scheduled_notice_is_cancelled_from_the_list(
    console: Console, runtime: Runtime, settings: Settings, tokens: dict[str, str]
) -> None:
    page = await console.page()
    await console.sign_in(page, token=tokens["staff"])
    await expect(page).to_have_url(re.compile(r"/console/notices$"))
    await page.get_by_role("link", name="作成", exact=True).click()
    await write_notice(page)
    tomorrow = datetime.now(settings.tz) + timedelta(days=1)
    when = page.get_by_label("配信日時")
    assert await when.get_attribute("type") == "datetime-local"
    await when.fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_role("button", name="送信する").click()

    await expect(page).to_have_url(re.compile(r"/console/notices\?done=scheduled$"))
    await expect(page.get_by_role("status")).to_have_text("予約しました。")
    (notice,) = await runtime.notices.list()
    assert notice["status"] == "scheduled"
    assert notice["notice"]["publish_at"].startswith(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    row = page.locator(f"#notice-{notice['id']}")
    publish_at = datetime.fromisoformat(notice["notice"]["publish_at"])
    assert publish_at.second == 0 and publish_at.utcoffset() == timedelta(hours=9)
    await expect(row.locator(".scheduled")).to_have_text(
        "配信予定 " + local_time(publish_at, settings.tz, year=True)
    )
    await expect(row.locator(".status")).to_have_attribute("data-status", "scheduled")
    await expect(row.locator(".status")).to_have_text("予約")
    await console.step(page, "scheduled")

    await row.get_by_role("button", name=f"「{TITLE}」の予約を取り消す").click()
    await expect(page).to_have_url(re.compile(r"/console/notices\?done=cancelled$"))
    await expect(page.get_by_role("status")).to_have_text("取り消しました。")
    await expect(row.locator(".status")).to_have_attribute("data-status", "cancelled")
    await expect(row.locator(".status")).to_have_text("取消")
    await expect(row.get_by_role("button")).to_have_count(0)
    await console.step(page, "cancelled")
    cancelled = await runtime.notices.get(notice["id"])
    assert cancelled is not None and cancelled["status"] == "cancelled"


async def test_the_compose_page_fits_desktop_and_tablet_and_works_by_keyboard(
    console: Console, runtime: Runtime
) -> None:
    for size in (DESKTOP, TABLET):
        page = await console.signed_in("staff", size)
        await page.goto("/console/compose")
        for label in (TITLE_FIELD, BODY_FIELD, "リンク（任意）", "配信日時", "ごみ・リサイクル"):
            await expect(page.get_by_label(label)).to_be_editable()
        await expect(page.get_by_label("LINE", exact=True)).to_be_checked()

        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="本文へ移動")).to_be_focused()
        await page.keyboard.press("Enter")  # the skip link: past the menu, to the form
        await page.keyboard.press("Tab")
        await expect(page.get_by_label(TITLE_FIELD)).to_be_focused()
        await page.keyboard.type(TITLE)
        await page.keyboard.press("Tab")
        await expect(page.get_by_label(BODY_FIELD)).to_be_focused()
        await page.keyboard.type(BODY)
        await page.keyboard.press("Tab")
        await expect(page.get_by_label("防災")).to_be_focused()
        await page.keyboard.press("Space")
        await expect(page.get_by_label("防災")).to_be_checked()
        await expect(page.locator("#preview-x .counter").first).to_be_visible()
        await no_sideways_scroll(page)
        await console.step(page, f"compose-{size[0]}")

        await page.get_by_role("button", name="送信する").focus()
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile(r"/console/notices\?done=queued$"))
        await expect(page.locator(".status").first).to_have_attribute("data-status", "done")
        await no_sideways_scroll(page)
        await console.step(page, f"notices-{size[0]}")
        await page.context.close()
