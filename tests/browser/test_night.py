"""The list in the quiet hours, in Chromium: a routine LINE notice says until when it waits,
in the ward's time and words."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from notifier.config import Settings
from notifier.runtime import Runtime
from notifier.when import local_time
from tests.browser.conftest import Console, subscribe
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    """Quiet hours from an hour ago to two hours from now: routine LINE pushes wait."""
    now = datetime.now(make_settings(tmp_path, prefix).tz)
    hours = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    return make_settings(tmp_path, prefix, quiet_hours=hours)


async def test_a_notice_held_for_the_night_says_until_when(
    console: Console, runtime: Runtime, settings: Settings
) -> None:
    await subscribe(runtime, [{"channel": "line", "address": "U" + "5" * 32}])
    page = await console.signed_in("staff")
    await page.get_by_role("link", name="作成", exact=True).click()
    await page.get_by_label("件名（100文字まで）").fill("夜の投稿")
    await page.get_by_label("本文（5,000文字まで）").fill("朝に届きます。")
    await page.get_by_label("ごみ・リサイクル").check()
    for channel in ("X", "メール", "印刷"):
        await page.get_by_label(channel, exact=True).uncheck()
    await page.get_by_role("button", name="送信する").click()

    await expect(page).to_have_url(re.compile(r"/console/notices\?done=queued$"))
    (notice,) = await runtime.notices.list()
    row = page.locator(f"#notice-{notice['id']}")
    assert settings.quiet_hours is not None  # its end, as the fixture wrote it: a minute
    hour, minute = map(int, settings.quiet_hours.split("-")[1].split(":"))  # may have passed
    end = (datetime.now(settings.tz) + timedelta(hours=2)).replace(
        hour=hour, minute=minute, second=0, microsecond=0
    )
    waits = row.locator('.waits[data-channel="line"]')
    await expect(waits).to_have_text(f"夜間のため{local_time(end, settings.tz)}まで保留")
    await expect(row.locator(".status")).to_have_text("配信中")
    await console.step(page, "held")
