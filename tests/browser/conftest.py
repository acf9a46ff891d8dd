"""Browser fixtures: Debian's Chromium, headless, driven by Playwright against the real service.

Each test gets its own browser (pytest-asyncio gives each test its own event loop, and the
service runs in it). ``Console.step`` shoots the whole page into the test's temporary
folder (``tmp_path``/<step>.png; pytest keeps the last three runs' folders) and fails the
test if the page's text shows a raw machine time or its console an error; every open page
is shot as failed-<n>.png there when a test fails.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    async_playwright,
    expect,
)

from notifier.runtime import Runtime
from notifier.service import Service

# a time as machines write it (2026-12-20, 09:00), never as staff should read one
RAW_TIME = re.compile(r"\d{4}-\d\d-\d\d|\d{1,2}:\d\d")
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
    folder: Path
    errors: list[str] = field(default_factory=list)  # what the pages' consoles said

    async def page(self, size: tuple[int, int] = DESKTOP) -> Page:
        width, height = size
        context = await self.browser.new_context(
            base_url=self.base,
            viewport={"width": width, "height": height},
            locale="ja-JP",
            timezone_id="Asia/Tokyo",
        )
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        page.on("console", lambda message: self._console_message(page, message))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page

    def _console_message(self, page: Page, message: ConsoleMessage) -> None:
        """An error, unless it is Chromium saying that the page itself came with a 4xx:
        the console answers bad input with 400 and a refusal with 401 or 403, by design."""
        url = message.location.get("url")
        answered = message.text.startswith("Failed to load resource") and url == page.url
        if message.type == "error" and not answered:
            self.errors.append(f"{url}: {message.text}")

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
        return self.folder / f"{plain(step)}.png"

    async def shot(self, shown: Page | Locator, step: str) -> None:
        """A screenshot of the whole page, or of one element (a full-page shot leaves
        an iframe below the fold blank)."""
        if isinstance(shown, Page):
            await shown.screenshot(path=self.artifact(step), full_page=True)
        else:
            await shown.screenshot(path=self.artifact(step))

    async def step(self, page: Page, step: str) -> str:
        """What a member of staff sees at this step: shot, then its text (every frame's)
        checked for raw machine times, and no page's console has reported an error."""
        await self.shot(page, step)
        texts = [await frame.evaluate("document.body.innerText") for frame in page.frames]
        text = "\n".join(texts)
        raw = RAW_TIME.findall(text)
        assert not raw, f"{step}: times staff should not have to read: {raw}"
        assert not self.errors, f"{step}: the console said {self.errors}"
        return text


@pytest.fixture
async def console(
    request: pytest.FixtureRequest,
    service: Service,
    runtime: Runtime,
    browser: Browser,
    tmp_path: Path,
) -> AsyncIterator[Console]:
    shown = Console(f"http://127.0.0.1:{service.port}", browser, runtime, tmp_path)
    yield shown
    if request.node.stash.get(FAILED, False):
        pages = [page for context in browser.contexts for page in context.pages]
        for i, page in enumerate(pages, 1):
            await shown.shot(page, f"failed-{i}")
