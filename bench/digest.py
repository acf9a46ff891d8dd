"""Printed digest benchmark: the four areas' digests with --notices announcements each
(default 100; a third with a link, so a QR code), and with --residents N each area's N
mailing copies too (one merged file, the default), laid out by WeasyPrint in the PDF
process pool the `notifier digest` command uses, started (and its fonts loaded) before
the clock starts, as the service does at start-up. Prints the seconds for all four, the
PDF processes' CPU seconds per file (which other load on the machine hardly changes),
the pages and the size of each PDF; with --runs N, each run and the best and worst.
Target on the 2-core machine: ≤ 3 s in all (without mailing copies).

    .venv/bin/python bench/digest.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from bench.harness import drop_keys
from channels.print import PrintChannel
from notifier import logs
from notifier.config import load_settings
from notifier.digest import DigestBuilder, Period
from notifier.models import Announcement
from notifier.pdf import PdfMaker, processes_for_digest
from notifier.runtime import Runtime

BODY = (
    "12月から、粗大ごみの収集日が変わります。お住まいの地域の収集日は、同封の表でご確認ください。"
    "\n\n申し込みは、粗大ごみ受付センターへ電話でお願いします。"
)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    tmp = Path(tempfile.mkdtemp(prefix="notifier-digest-"))
    settings = load_settings(redis_url=args.redis_url, redis_prefix=prefix, print_dir=tmp)
    rt = Runtime.open(settings)
    ward = settings.ward
    now = datetime.now(UTC)
    try:
        async with rt.redis.pipeline(transaction=False) as pipe:
            for a, area in enumerate(ward.area_codes):
                for i in range(args.notices):
                    notice = Announcement.model_validate(
                        {
                            "title": f"{ward.area(area).name}のお知らせ その{i + 1}",
                            "body": BODY,
                            "topics": [ward.topic_codes[i % len(ward.topic_codes)]],
                            "areas": [area],
                            **(
                                {"url": f"https://www.city.nerima.tokyo.jp/n/{i}"}
                                if i % 3 == 0
                                else {}
                            ),
                        },
                        context={"ward": ward},
                    )
                    notice.id = f"{a}-{i}"
                    notice.received_at = now - timedelta(minutes=i)
                    content = PrintChannel.compose(rt.templates, notice, "ja")
                    pipe.hset(rt.keys.notice(notice.id), "notice", notice.model_dump_json())
                    pipe.hset(rt.keys.rendered(notice.id), "print:ja", json.dumps(content))
                    pipe.zadd(rt.keys.digest_pool(area), {notice.id: content["at"]})
            await pipe.execute()
        store = rt.subscribers
        await store.save(
            [
                store.validate(
                    {
                        "channel": "print",
                        "address": f"〒176-8501 東京都練馬区豊玉北6-12-{i + 1}",
                        "name": f"練馬 花子{i + 1}",
                        "areas": [],  # the whole ward: a copy of every area's digest
                    }
                )
                for i in range(args.residents)
            ]
        )
        period = Period(now - timedelta(days=1), now + timedelta(minutes=1))
        pdf = PdfMaker(args.processes)
        runs: list[tuple[float, float]] = []
        try:
            await pdf.start()  # every process started, WeasyPrint and the fonts loaded
            builder = DigestBuilder(rt, pdf)
            for _ in range(args.runs):
                cpu = cpu_seconds(pdf.pids)
                started = time.perf_counter()
                written = await builder.build(period)
                seconds = time.perf_counter() - started
                runs.append((seconds, (cpu_seconds(pdf.pids) - cpu) / len(written)))
        finally:
            pdf.close()
        files = {
            str(p.relative_to(p.parent.parent) if p.parent.name == "mail" else p.name): (
                len(PdfReader(p).pages),
                p.stat().st_size,
            )
            for p in written
        }
        return {
            "seconds": [round(seconds, 2) for seconds, _ in runs],
            "cpu_per_document": [round(cpu, 2) for _, cpu in runs],
            "processes": args.processes,
            "files": files,
        }
    finally:
        await rt.close()
        print(f"cleanup: deleted {drop_keys(args.redis_url, prefix)} key(s)", file=sys.stderr)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds the processes have used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notices", type=int, default=100, help="announcements per area")
    p.add_argument("--processes", type=int, default=processes_for_digest())
    p.add_argument(
        "--redis-url", default=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument("--runs", type=int, default=1, help="builds, one after the other")
    p.add_argument(
        "--residents",
        type=int,
        default=0,
        help="residents registered for print (whole ward): each area also makes their copies",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logs.setup("WARNING")
    figures = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"four areas × {args.notices} notices, {args.residents} mailing copies each, "
        f"{args.processes} PDF process(es)"
    )
    for name, (pages, size) in figures["files"].items():
        print(f"  {name}: {pages} pages, {size / 1024:.0f} KiB")
    seconds, cpu = figures["seconds"], figures["cpu_per_document"]
    for run, (took, each) in enumerate(zip(seconds, cpu, strict=True), 1):
        print(f"  run {run}: {took} s, {each} s CPU per file")
    print(f"all four digests: {min(seconds)} s best, {max(seconds)} s worst (target ≤ 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
