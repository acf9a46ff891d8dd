"""Browser fixtures: Debian's Chromium, headless, driven by Playwright against the real service.

Each test gets its own browser (pytest-asyncio gives each test its own event loop, and the
service runs in it); screenshots go to var/test-artifacts/browser/<test>-<step>.png, and
every open page is shot as <test>-failed-<n>.png when a test fails.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import ROOT

ARTIFACTS = ROOT / "var" / "test-artifacts" / "browser"
PASSWORD = "correct-horse-battery-staple"
WAIT_MS = 10_000  # any one step; well inside the 60 s a test may take
DESKTOP = (1280, 800)
TABLET = (768, 1024)

expect.set_options(timeout=WAIT_MS)
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "the browser tests need Debian's Chromium on PATH: apt-get install chromium",
            pytrace=False,
        )
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable)
        yield launched
        await launched.close()


def plain(name: str) -> str:
    """A test's or step's name as part of a file name."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-")


async def subscribe(runtime: Runtime, rows: list[dict[str, Any]]) -> None:
    """Residents to deliver to, so that the progress bars have something to count."""
    store = runtime.subscribers
    await store.save([store.validate(row) for row in rows])


@dataclass
class Console:
    """The running service's console, seen through the browser."""

    base: str
    browser: Browser
    runtime: Runtime
    test: str

    async def page(self, size: tuple[int, int] = DESKTOP) -> Page:
        width, height = size
        context = await self.browser.new_context(
            base_url=self.base,
            viewport={"width": width, "height": height},
            locale="ja-JP",
            timezone_id="Asia/Tokyo",
        )
        context.set_default_timeout(WAIT_MS)
        return await context.new_page()

    async def sign_in(
        self, page: Page, name: str = "", password: str = "", token: str = ""
    ) -> None:
        """Fill in and send the sign-in form (opened unless the page shows it already)."""
        if "/console/signin" not in page.url:
            await page.goto("/console/signin")
        if token:
            await page.get_by_label("トークン").fill(token)
        else:
            await page.get_by_label("名前").fill(name)
            await page.get_by_label("パスワード").fill(password)
        await page.get_by_role("button", name="サインイン", exact=True).click()
        await page.wait_for_load_state()

    async def signed_in(self, role: str, size: tuple[int, int] = DESKTOP) -> Page:
        """A page signed in with a new token of ``role``, on the notices list (a token:
        an account's argon2 hash and check would cost this test a second or two)."""
        token = await self.runtime.tokens.create(role, f"{role}-browser-{size[0]}")
        page = await self.page(size)
        await self.sign_in(page, token=token)
        await expect(page).to_have_url(re.compile(r"/console/notices$"))
        return page

    def artifact(self, step: str) -> Path:
        return ARTIFACTS / f"{plain(self.test)}-{plain(step)}.png"

    async def shot(self, shown: Page | Locator, step: str) -> None:
        """A screenshot of the whole page, or of one element (a full-page shot leaves
        an iframe below the fold blank)."""
        if isinstance(shown, Page):
            await shown.screenshot(path=self.artifact(step), full_page=True)
        else:
            await shown.screenshot(path=self.artifact(step))


@pytest.fixture
async def console(
    request: pytest.FixtureRequest, service: Service, runtime: Runtime, browser: Browser
) -> AsyncIterator[Console]:
    shown = Console(f"http://127.0.0.1:{service.port}", browser, runtime, request.node.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob(f"{plain(shown.test)}-*.png"):  # an earlier run's
        stale.unlink()
    yield shown
    if request.node.stash.get(FAILED, False):
        pages = [page for context in browser.contexts for page in context.pages]
        for i, page in enumerate(pages, 1):
            await shown.shot(page, f"failed-{i}")
