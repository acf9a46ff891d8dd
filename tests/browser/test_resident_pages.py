"""A resident's email pages on a phone (390×844), in Chromium, in Japanese, やさしい日本語
and English: subscribe, confirm, change the settings, leave. Each page is shot into the
test's temporary folder (<lang>-<step>.png); touch targets are checked for size."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from notifier.config import Settings
from notifier.i18n import HTML_LANG
from notifier.runtime import Runtime
from notifier.service import Service
from tests.browser.conftest import WAIT_MS
from tests.conftest import wait_for

PHONE = (390, 844)
KANJI_OR_KANA = re.compile(r"[\u3041-\u30ff\u4e00-\u9fff]")
LANGUAGE_NAMES = ("やさしい日本語", "日本語", "中文")  # names in themselves, on every page

WORDS = {
    "ja": {
        "locale": "ja-JP",
        "address": "ｓａｃｈｉｋｏ＠ｅｘａｍｐｌｅ．ｊｐ",
        "stored": "sachiko@example.jp",
        "label": "メールアドレス（必須）",
        "area": "大泉",
        "topic": "防災",
        "send": "確認メールを送る",
        "sent": "確認メールを送りました",
        "confirmed": "登録が完了しました",
        "change": "設定を変える",
        "other_area": "石神井",
        "save": "保存する",
        "saved": "設定を保存しました。",
        "stop": "配信を停止する",
        "left": "配信を停止しました",
    },
    "easy": {  # chosen on the page: no browser asks for it
        "locale": "ja-JP",
        "address": "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ",
        "stored": "taro@example.jp",
        "label": "メールアドレス（かならず かいて ください）",
        "area": "おおいずみ（大泉）",
        "topic": "ぼうさい（防災）",
        "send": "かくにんの メールを おくる",
        "sent": "かくにんの メールを おくりました",
        "confirmed": "とうろくが おわりました",
        "change": "せっていを かえる",
        "other_area": "しゃくじい（石神井）",
        "save": "ほぞんする",
        "saved": "せっていを ほぞんしました。",
        "stop": "メールを とめる",
        "left": "メールを とめました",
    },
    "en": {
        "locale": "en-US",
        "address": "ken@example.com",
        "stored": "ken@example.com",
        "label": "Email address (required)",
        "area": "Oizumi",
        "topic": "Disaster prevention",
        "send": "Send the confirmation email",
        "sent": "We have sent you a confirmation email",
        "confirmed": "You are registered",
        "change": "Change settings",
        "other_area": "Shakujii",
        "save": "Save",
        "saved": "Your settings are saved.",
        "stop": "Unsubscribe",
        "left": "The emails have been stopped",
    },
}


async def phone(browser: Browser, base: str, locale: str) -> Page:
    width, height = PHONE
    context = await browser.new_context(
        base_url=base,
        viewport={"width": width, "height": height},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale=locale,
        timezone_id="Asia/Tokyo",
    )
    context.set_default_timeout(WAIT_MS)
    return await context.new_page()


async def looked_at(page: Page, folder: Path, lang: str, step: str) -> str:
    """Shoot the page; check its lang, and that an English page has no Japanese in it."""
    await page.screenshot(path=folder / f"{lang}-{step}.png", full_page=True)
    assert await page.get_attribute("html", "lang") == HTML_LANG.get(lang, lang)
    text = await page.evaluate("document.body.innerText")
    if lang == "en":
        for name in LANGUAGE_NAMES:
            text = text.replace(name, "")
        assert not KANJI_OR_KANA.search(text), (step, text)
    return str(text)


async def touch_targets_are_large(page: Page) -> None:
    sizes = await page.evaluate(
        """() => [...document.querySelectorAll('input[type=checkbox], input[type=radio]')]
            .map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height,
              e.closest('label').getBoundingClientRect().height]; })"""
    )
    assert sizes and all(w >= 24 and h >= 24 and label >= 44 for w, h, label in sizes), sizes
    fonts = await page.evaluate(
        """() => [...document.querySelectorAll('input[type=email], button')]
            .map(e => parseFloat(getComputedStyle(e).fontSize))"""
    )
    assert all(size >= 16 for size in fonts), fonts  # phones zoom into smaller fields


def confirmation(settings: Settings) -> Message:
    (path,) = (settings.outbox_dir / "email").glob("confirm-*.eml")
    message = message_from_bytes(path.read_bytes())
    path.unlink()
    return message


@pytest.mark.parametrize("lang", ["ja", "easy", "en"])
async def test_a_resident_subscribes_changes_and_leaves_on_a_phone(
    browser: Browser,
    service: Service,
    runtime: Runtime,
    settings: Settings,
    tmp_path: Path,
    lang: str,
) -> None:
    words = WORDS[lang]
    page = await phone(browser, f"http://127.0.0.1:{service.port}", words["locale"])
    await page.goto("/subscribe")  # the language from the browser's
    if lang == "easy":
        await page.get_by_role("link", name="やさしい日本語").click()
    await expect(page.get_by_label(words["label"])).to_be_visible()
    await touch_targets_are_large(page)
    await page.get_by_label(words["label"]).fill(words["address"])
    await page.get_by_label(words["area"], exact=True).check()
    await page.get_by_label(words["topic"], exact=True).check()
    await looked_at(page, tmp_path, lang, "1-subscribe")
    await page.get_by_role("button", name=words["send"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(words["sent"])
    await looked_at(page, tmp_path, lang, "2-sent")

    async def mailed() -> bool:
        return any((settings.outbox_dir / "email").glob("confirm-*.eml"))

    await wait_for(mailed)
    mail = confirmation(settings)
    assert mail["To"] == words["stored"]
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    link = re.search(r"https?://\S+/subscribe/confirm/[\w-]+", body.decode())
    assert link
    await page.goto("/subscribe/" + link[0].split("/subscribe/", 1)[1])
    await expect(page.get_by_role("heading", level=1)).to_have_text(words["confirmed"])
    text = await looked_at(page, tmp_path, lang, "3-confirmed")
    assert words["area"] in text and words["topic"] in text

    await page.get_by_role("link", name=words["change"]).click()
    await expect(page.get_by_label(words["area"], exact=True)).to_be_checked()
    await touch_targets_are_large(page)
    await page.get_by_label(words["other_area"], exact=True).check()
    await looked_at(page, tmp_path, lang, "4-settings")
    await page.get_by_role("button", name=words["save"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(words["saved"])
    text = await looked_at(page, tmp_path, lang, "5-saved")
    assert words["other_area"] in text
    subscriber_id = await runtime.subscribers.find("email", words["stored"])
    sub = await runtime.subscribers.get(str(subscriber_id))
    assert sub is not None and set(sub.areas) == {"shakujii", "oizumi"} and sub.language == lang

    await page.get_by_role("link", name=words["change"]).click()
    await page.get_by_role("link", name=words["stop"]).click()
    await looked_at(page, tmp_path, lang, "6-unsubscribe")
    await page.get_by_role("button", name=words["stop"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(words["left"])
    await looked_at(page, tmp_path, lang, "7-left")
    assert await runtime.subscribers.find("email", words["stored"]) is None
