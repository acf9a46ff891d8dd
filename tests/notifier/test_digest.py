"""The printed digest and the emergency flyer, checked from the outside: the PDFs' page
size, embedded fonts, the text read back, the smallest type, the area filter, the
mailing copy's address block; the schedule and the catch-up after downtime."""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from notifier import alerts, intake
from notifier.config import Settings
from notifier.digest import DigestBuilder, Period, build_due, era_date, last_fire, week_before
from notifier.pdf import PdfMaker, render_booklets
from notifier.runtime import Runtime
from notifier.scheduler import Scheduler
from tests.conftest import announcement, delivering, finished, make_settings

A4 = (595.28, 841.89)  # points


def test_dates_are_written_with_the_era() -> None:
    assert era_date(datetime(2026, 11, 23).date()) == "令和8年11月23日"
    assert era_date(datetime(2019, 5, 1).date()) == "令和元年5月1日"
    monday = datetime(2026, 11, 23)
    week = Period(monday, monday + timedelta(days=7))
    assert week.text == "令和8年11月23日〜11月29日"
    assert week.label == "2026-W48"
    new_year = datetime(2026, 12, 28)
    assert Period(new_year, new_year + timedelta(days=7)).text == "令和8年12月28日〜令和9年1月3日"


def test_the_digest_due_is_last_weeks_once_the_cron_has_fired(settings: Settings) -> None:
    tz = settings.tz
    wednesday = datetime(2026, 11, 25, 10, 0, tzinfo=tz)
    fired = last_fire("0 6 * * mon", settings, wednesday)
    assert fired == datetime(2026, 11, 23, 6, 0, tzinfo=tz)
    assert week_before(fired).start == datetime(2026, 11, 16, tzinfo=tz)
    early_monday = datetime(2026, 11, 23, 5, 59, tzinfo=tz)  # not yet: the week before's
    assert last_fire("0 6 * * mon", settings, early_monday) == datetime(
        2026, 11, 16, 6, 0, tzinfo=tz
    )


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    """A printer that takes each flyer: here, a folder it is copied to."""
    (tmp_path / "printer").mkdir()
    return make_settings(tmp_path, prefix, print_command=f"cp -t {tmp_path / 'printer'}")


async def register(runtime: Runtime, address: str, name: str, areas: list[str]) -> None:
    """A resident registered for print (an empty ``areas``: the whole ward)."""
    store = runtime.subscribers
    await store.save(
        [store.validate({"channel": "print", "address": address, "name": name, "areas": areas})]
    )


@pytest.fixture
async def delivered(runtime: Runtime, settings: Settings) -> AsyncIterator[dict[str, str]]:
    """Five announcements (three for Nerima, one for the whole ward, one for Oizumi) and an
    alert for Nerima, delivered on print; a resident registered for print in Nerima. Nerima's
    four notices make a booklet with contents (a digest of up to three that fits one page
    is printed on it: tests/notifier/test_paper_digest.py)."""
    await register(runtime, "〒176-8501 東京都練馬区豊玉北6-12-1", "練馬花子", ["nerima"])
    ids: dict[str, str] = {}
    for key, fields in {
        "nerima": {"title": "粗大ごみの収集日が変わります", "areas": ["nerima"]},
        "nerima-2": {"title": "資源回収のお知らせ", "areas": ["nerima"], "topics": ["garbage"]},
        "nerima-3": {"title": "地域の清掃活動", "areas": ["nerima"], "topics": ["community"]},
        "ward": {
            "title": "区民健康診断のお知らせ",
            "body": "区民健康診断を実施します。",
            "topics": ["health"],
            "areas": [],
            "url": "https://www.city.nerima.tokyo.jp/kenko/",
            "translations": {"easy": {"title": "けんこうしんだん", "body": "けんさを します。"}},
        },
        "oizumi": {
            "title": "大泉地域のお祭り",
            "body": "大泉の公園でお祭りがあります。",
            "topics": ["events"],
            "areas": ["oizumi"],
        },
    }.items():
        notice = intake.validate(announcement(channels=["print"], **fields), settings)
        await intake.enqueue(runtime.notices, notice)
        assert notice.id is not None
        ids[key] = notice.id
    alert = alerts.validate(
        {
            "title": "避難指示",
            "body": "石神井川が氾濫するおそれがあります。",
            "severity": "emergency",
            "areas": ["nerima"],
            "channels": ["print"],
        },
        settings,
    )
    ids["alert"] = (await runtime.alerts.issue(alert, "desk")).id
    async with delivering(settings, "print"):
        for notice_id in ids.values():
            assert (await finished(runtime, notice_id, timeout=60))["status"] == "done"
    yield ids


def text_of(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def smallest_type(path: Path) -> float:
    """The smallest font size any text on any page is drawn at, in points."""
    sizes: list[float] = []

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text.strip():
            scale = math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
            sizes.append(size * scale)

    for page in PdfReader(path).pages:
        page.extract_text(visitor_text=visit)
    return min(sizes)


def embedded_fonts(path: Path) -> list[tuple[str, bool]]:
    found = []
    for page in PdfReader(path).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descendant = (
                font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
            )
            descriptor = descendant["/FontDescriptor"].get_object()
            embedded = any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))
            found.append((str(font["/BaseFont"]), embedded))
    return found


async def test_each_area_gets_a_legible_a4_digest_of_its_own_notices(
    runtime: Runtime, settings: Settings, delivered: dict[str, str]
) -> None:
    now = datetime.now(settings.tz)
    period = Period(now - timedelta(hours=1), now + timedelta(minutes=5))
    pdf = PdfMaker()
    try:
        builder = DigestBuilder(runtime, pdf)
        written = await builder.build(period)
    finally:
        pdf.close()
    folder = settings.print_dir / period.label
    assert folder / "nerima.pdf" in written and folder / "mail" / "nerima.pdf" in written
    assert not (folder / "mail" / "oizumi.pdf").exists()  # nobody registered there

    nerima, oizumi = folder / "nerima.pdf", folder / "oizumi.pdf"
    for path in (nerima, oizumi):
        for page in PdfReader(path).pages:
            width, height = float(page.mediabox.width), float(page.mediabox.height)
            assert (round(width), round(height)) == (round(A4[0]), round(A4[1]))
        fonts = embedded_fonts(path)
        assert fonts and all(embedded for _, embedded in fonts), fonts
        assert any("BIZ-UDGothic" in name or "IPAex" in name for name, _ in fonts), fonts
        assert smallest_type(path) >= 16 - 0.01
    text = text_of(nerima).replace(" ", "")
    for wanted in (
        "練馬区",
        "粗大ごみの収集日が変わります",
        "区民健康診断のお知らせ",
        "けんこうしんだん",
    ):
        assert wanted in text
    assert "【緊急】避難指示" in text and "令和" in text and "03-3993-1111" in text
    assert "https://www.city.nerima.tokyo.jp/kenko/" in text.replace("\n", "")  # may wrap
    assert "大泉地域のお祭り" not in text
    pages = [page.extract_text().replace(" ", "") for page in PdfReader(nerima).pages]
    # the front matter is unnumbered; the notices' pages say "N/M" at their foot, from 1
    numbered = {int(m[1]): text for text in pages if (m := re.search(r"\n(\d+)\s*/\s*\d+$", text))}
    assert sorted(numbered) == list(range(1, len(pages))), pages  # the cover fits one page
    for title in ("粗大ごみの収集日が変わります", "区民健康診断のお知らせ"):  # contents → its page
        listed = re.search(f"{title}　…　(\\d+)ページ", pages[0])
        assert listed, pages[0]
        assert title in numbered[int(listed[1])]
    other = text_of(oizumi).replace(" ", "")
    assert "大泉地域のお祭り" in other and "区民健康診断のお知らせ" in other
    assert "粗大ごみの収集日が変わります" not in other and "避難指示" not in other

    mailing = PdfReader(folder / "mail" / "nerima.pdf")
    first_page = mailing.pages[0].extract_text().replace(" ", "").replace("\n", "")
    assert "練馬花子様" in first_page and "豊玉北6-12-1" in first_page


async def test_mailing_copies_carry_their_own_address_over_the_areas_pages(
    runtime: Runtime, settings: Settings, delivered: dict[str, str]
) -> None:
    await register(runtime, "〒177-0041 東京都練馬区石神井町3-30-1", "石神井太郎", [])  # every area
    now = datetime.now(settings.tz)
    period = Period(now - timedelta(hours=1), now + timedelta(minutes=5))
    pdf = PdfMaker()
    try:
        builder = DigestBuilder(runtime, pdf)
        await builder.build(period, ["nerima"])  # merged: one file for the print shop
        builder.settings = settings.model_copy(update={"print_mail": "each"})
        each = [p for p in await builder.build(period, ["nerima"]) if p.parent.name == "mail"]
    finally:
        pdf.close()

    def pages(path: Path) -> list[str]:
        """Each page's text; the reader takes the gaps of "N / M" for spaces of either width."""
        return [re.sub("[ \u3000]", "", page.extract_text()) for page in PdfReader(path).pages]

    folder = settings.print_dir / period.label
    general = pages(folder / "nerima.pdf")
    merged = pages(folder / "mail" / "nerima.pdf")
    names = ("練馬花子様", "石神井太郎様")

    def parts(booklet: list[str]) -> tuple[str, list[str]]:
        """(front matter, notices' pages): those are numbered "N/M" at their foot."""
        body = [text for text in booklet if re.search(r"\n\d+\s*/\s*\d+$", text)]
        return "".join(text for text in booklet if text not in body), body

    starts = [i for i, text in enumerate(merged) if "くらしのお知らせ" in text] + [len(merged)]
    copies = [merged[a:b] for a, b in itertools.pairwise(starts)]
    assert len(copies) == 2 and sorted(pages(path) for path in each) == sorted(copies)
    front, body = parts(general)
    for copy in copies:
        own_front, own_body = parts(copy)
        assert own_body == body  # the area's notices' pages, numbered the same
        assert sum(name in own_front.replace("\n", "") for name in names) == 1
        assert re.findall(r"…(\d+)ページ", own_front) == re.findall(r"…(\d+)ページ", front)
    assert not any(name in "".join(general) for name in names)


def test_a_booklet_fills_in_the_contents_pages_and_may_have_no_body() -> None:
    cover = "<p>A …<!--page-of:a-->ページ</p><p>B …<!--page-of:b-->ページ</p>"
    body = '<p id="a">A</p><p id="b" style="break-before: page">B</p>'
    (booklet,) = render_booklets(body, [[cover]])
    reader = PdfReader(io.BytesIO(booklet))
    assert len(reader.pages) == 3
    front = reader.pages[0].extract_text().replace(" ", "")
    assert "A…1ページ" in front and "B…2ページ" in front
    alone = render_booklets(None, [["<p>この期間のお知らせはありません。</p>"], ["<p>C</p>"]])
    assert [len(PdfReader(io.BytesIO(pdf)).pages) for pdf in alone] == [1, 1]


async def test_an_alert_makes_a_one_page_flyer_per_affected_area(
    settings: Settings, delivered: dict[str, str]
) -> None:
    flyers = sorted((settings.print_dir / "alerts").glob("*.pdf"))
    assert [p.name for p in flyers] == [f"{delivered['alert']}-nerima.pdf"]
    reader = PdfReader(flyers[0])
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text().replace(" ", "")
    assert "【緊急】練馬区" in text and "避難指示" in text and "03-3993-1111" in text
    assert "緊急情報" not in text  # the marks once, in the band, then the title
    assert smallest_type(flyers[0]) >= 20 - 0.01
    printed = settings.print_dir.parent / "printer" / flyers[0].name  # NOTIFIER_PRINT_COMMAND
    assert printed.read_bytes() == flyers[0].read_bytes()


async def test_a_digest_due_while_the_service_was_down_is_built_once_when_it_is_back(
    runtime: Runtime, settings: Settings
) -> None:
    now = datetime(2026, 11, 25, 10, 0, tzinfo=settings.tz)  # the Monday 06:00 run was missed
    built: list[Period] = []

    class Builder(DigestBuilder):
        async def build(self, period: Period, areas: list[str] | None = None) -> list[Path]:
            built.append(period)
            return []

    rt = runtime
    builder = Builder(rt, PdfMaker())
    await build_due(builder, rt.redis, rt.keys, now)
    await build_due(builder, rt.redis, rt.keys, now + timedelta(hours=1))  # built already
    assert [p.label for p in built] == ["2026-W47"]

    calls: list[datetime] = []

    async def digest() -> None:
        calls.append(datetime.now(UTC))

    scheduler = Scheduler(settings, rt.redis, rt.keys, digest=digest)
    scheduler.start()  # the catch-up runs at once; the weekly one waits for its hour
    try:
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.02)
    finally:
        scheduler.shutdown()
    assert len(calls) == 1
