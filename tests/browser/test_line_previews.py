"""The compose page's LINE preview, in Chromium: one bubble for each language the notice
has, each named by its language, as each reader will get it."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import Console
from tests.browser.test_console import TITLE, write_notice

ENGLISH_TITLE = "Bulky waste collection days change"


async def test_the_line_preview_shows_each_languages_bubble(console: Console) -> None:
    page = await console.signed_in("staff")
    await page.goto("/console/compose")
    await write_notice(page)
    await page.get_by_text("English（任意）").click()
    await page.get_by_label("Englishの件名").fill(ENGLISH_TITLE)
    await page.get_by_label("Englishの本文").fill("The days change from January.")
    previews = page.locator("#previews")
    english = previews.locator("#preview-line-en")
    await expect(english.locator("h3")).to_have_text("LINE（English）")
    await expect(english.locator(".bubble")).to_contain_text(ENGLISH_TITLE)
    await expect(english.locator(".bubble")).not_to_contain_text(TITLE)
    await expect(previews.locator("#preview-line h3")).to_have_text("LINE（日本語）")
    await expect(previews.locator("#preview-line .bubble")).to_contain_text(TITLE)
    await expect(previews.locator("#preview-line .bubble")).not_to_contain_text(ENGLISH_TITLE)
    await console.shot(english, "line-en")
    await console.shot(page, "line-previews")  # (the English bubble's time is 4:35 p.m.)
    assert not console.errors
