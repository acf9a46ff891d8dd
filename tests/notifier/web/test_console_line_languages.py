"""The console's preview shows the LINE bubble of each language the notice has, named."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from notifier.runtime import Runtime
from notifier.service import Service
from tests.notifier.web.test_console import Console


@pytest.fixture
async def staff(service: Service, runtime: Runtime) -> AsyncIterator[Console]:
    """A member of staff signed in, on the compose page."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        console = Console(session, f"http://127.0.0.1:{service.port}")
        await console.sign_in(token=await runtime.tokens.create("staff", "preview"))
        await console.get("/console/compose")
        yield console


async def test_the_line_preview_shows_each_translations_bubble_named(
    staff: Console,
) -> None:
    form = {
        "title": "粗大ごみの収集日",
        "body": "収集日が変わります。",
        "topics": "garbage",
        "channels": "line",
        "title_en": "Bulky waste collection days",
        "body_en": "The days change.",
        "title_ko": "대형 쓰레기 수거일",
        "body_ko": "수거일이 바뀝니다.",
    }
    _, text, _ = await staff.post("/console/preview", form)
    html = json.loads(text)["html"]
    line = r'<article class="preview line" id="([\w-]+)"[^>]*>\s*<h3>([^<]+)</h3>'
    articles = re.findall(line, html)
    assert articles == [
        ("preview-line", "LINE（日本語）"),
        ("preview-line-en", "LINE（English）"),
        ("preview-line-ko", "LINE（한국어）"),
    ]
    english = html.split('id="preview-line-en"')[1].split("</article>")[0]
    assert 'lang="en"' in html and "Bulky waste collection days" in english
    assert "Nerima City notice" in english and "粗大ごみ" not in english
    korean = html.split('id="preview-line-ko"')[1].split("</article>")[0]
    assert "대형 쓰레기 수거일" in korean and "Bulky" not in korean
    japanese = html.split('id="preview-line"')[1].split("</article>")[0]
    assert "粗大ごみの収集日" in japanese and "Bulky" not in japanese


async def test_a_notice_without_translations_shows_one_bubble_as_before(
    staff: Console,
) -> None:
    form = {"title": "題", "body": "本文", "topics": "garbage", "channels": "line"}
    _, text, _ = await staff.post("/console/preview", form)
    html = json.loads(text)["html"]
    assert html.count('class="preview line"') == 1 and "<h3>LINE</h3>" in html
