"""The printed digest as a resident holds it: a week of one notice is one page, the
alerts' box is not split from its text, and Latin, Korean and Chinese print in faces
that have them (each text run's font, read back from the PDF)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from channels.print import PrintChannel
from notifier.digest import DigestBuilder, Period
from notifier.models import Alert, Announcement
from notifier.pdf import PdfMaker
from notifier.runtime import Runtime
from tests.channels.test_print_flyer import fonts_of, read_back

NOW = datetime.now(UTC)
PERIOD = Period(NOW - timedelta(days=1), NOW + timedelta(minutes=1))
URL = "https://www.city.nerima.tokyo.jp/kurashi/gomi/index.html"
KOREAN, CHINESE = "한국어 상담 창구", "这里说明们的时间"


async def pooled(runtime: Runtime, n: int, **fields: Any) -> None:
    """An announcement for Nerima, delivered on print: in the area's digest pool."""
    notice = Announcement.model_validate(
        {
            "title": f"粗大ごみの収集日が変わります その{n}",
            "body": "12月から、粗大ごみの収集日が変わります。",
            "topics": ["garbage"],
            "areas": ["nerima"],
            **fields,
        },
        context={"ward": runtime.settings.ward},
    )
    notice.id, notice.received_at = f"{n:016x}", NOW - timedelta(minutes=n)
    content = PrintChannel.compose(runtime.templates, notice, "ja")
    await runtime.redis.hset(runtime.keys.notice(notice.id), "notice", notice.model_dump_json())
    await runtime.redis.hset(runtime.keys.rendered(notice.id), "print:ja", json.dumps(content))
    await runtime.redis.zadd(runtime.keys.digest_pool("nerima"), {notice.id: content["at"]})


async def issued(runtime: Runtime, n: int, body: str) -> None:
    """An alert for Nerima issued in the period."""
    alert = Alert.model_validate(
        {"title": f"避難指示 その{n}", "body": body, "severity": "emergency", "areas": ["nerima"]},
        context={"ward": runtime.settings.ward},
    )
    alert.id, alert.received_at = f"a{n:015x}", NOW - timedelta(minutes=n)
    key = runtime.keys.notice(alert.id)
    await runtime.redis.hset(key, mapping={"kind": "alert", "notice": alert.model_dump_json()})
    await runtime.redis.zadd(runtime.keys.notices, {alert.id: alert.received_at.timestamp()})


async def register(runtime: Runtime) -> None:
    store = runtime.subscribers
    resident = {"channel": "print", "address": "〒176-8501 東京都練馬区豊玉北6-12-1"}
    await store.save([store.validate({**resident, "name": "練馬花子", "areas": ["nerima"]})])


async def build(runtime: Runtime) -> dict[str, Path]:
    pdf = PdfMaker(1)
    try:
        written = await DigestBuilder(runtime, pdf).build(PERIOD, ["nerima"])
    finally:
        pdf.close()
    return {path.parent.name: path for path in written}  # the week's folder, or "mail"


def pages(path: Path) -> list[str]:
    return [page.extract_text().replace(" ", "") for page in PdfReader(path).pages]


def runs(path: Path) -> list[tuple[str, str]]:
    """Each text run of a PDF with the font it is drawn in."""
    found: list[tuple[str, str]] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        if text.strip() and font is not None:
            found.append((text, str(font["/BaseFont"])))

    for page in PdfReader(path).pages:
        page.extract_text(visitor_text=visit)
    return found


async def test_a_week_of_one_notice_is_one_page_with_the_notice_on_it(runtime: Runtime) -> None:
    await pooled(runtime, 1, url=URL)
    await register(runtime)
    files = await build(runtime)
    general, mailing = pages(files[PERIOD.label]), pages(files["mail"])
    assert len(general) == 1 and len(mailing) == 1
    for page in (general[0], mailing[0]):
        assert "くらしのお知らせ" in page and "粗大ごみの収集日が変わりますその1" in page
        assert "12月から、粗大ごみの収集日が変わります。" in page
        assert "もくじ" not in page and "ページ" not in page  # no contents for what is here
    assert "練馬花子様" in mailing[0] and "練馬花子" not in general[0]


async def test_more_notices_than_fold_onto_the_cover_keep_their_contents(
    runtime: Runtime,
) -> None:
    for n in range(1, 5):
        await pooled(runtime, n)
    general = pages((await build(runtime))[PERIOD.label])
    assert len(general) == 2 and "もくじ" in general[0]
    contents = general[0].replace("　", "")
    assert all(f"粗大ごみの収集日が変わりますその{n}…1ページ" in contents for n in range(1, 5))


async def test_the_mailing_copys_alerts_box_holds_its_text_on_one_page(
    runtime: Runtime,
) -> None:
    """The address block pushes the box down the cover: the box and its alert's text stay
    together on the page (it would be split, unclosed, across pages 1 and 2)."""
    body = "石神井川が氾濫するおそれがあります。\n\n直ちに近くの避難所へ避難してください。"
    await issued(runtime, 1, body)
    await issued(runtime, 2, body)
    for n in range(1, 6):
        await pooled(runtime, n)
    await register(runtime)
    mailing = pages((await build(runtime))["mail"])
    holding = [i for i, page in enumerate(mailing) if "この期間の緊急情報" in page]
    assert holding == [0]
    for n in (1, 2):
        assert f"【緊急】避難指示その{n}" in mailing[0]
        assert "直ちに近くの避難所へ避難してください。" in mailing[0]


async def test_latin_korean_and_chinese_print_in_faces_that_have_them(
    runtime: Runtime,
) -> None:
    await pooled(runtime, 1, url=URL, body=f"外国語の相談窓口があります。\n\n{KOREAN}\n\n{CHINESE}")
    path = (await build(runtime))[PERIOD.label]
    fonts = fonts_of(path)
    assert fonts and all(f["emb"] == "yes" for f in fonts), fonts
    text = read_back(path).text()
    assert KOREAN.replace(" ", "") in text and CHINESE in text
    drawn = runs(path)

    def faces(part: str) -> set[str]:
        return {font.split("+")[-1] for run, font in drawn if part in run}

    assert faces("한국어") == {"NanumBarunGothic"}
    # in Japanese text, the characters Japanese faces lack: from the Chinese face
    assert all(faces(char) == {"Droid-Sans-Fallback"} for char in "这说们时")
    assert faces("https://") == {"BIZ-UDPGothic-Latin"}  # proportional Latin for the URL
    assert faces("粗大ごみ") <= {"BIZ-UDGothic", "BIZ-UDGothic-Bold"}
