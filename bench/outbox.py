"""Fan-out benchmark: one announcement to N subscribers, end to end, in outbox mode.

It measures, against a real Redis:

* loading N subscribers per subscriber channel (``SubscriberStore.validate`` + ``save``
  in chunks of 5000), with areas, topics and languages varied;
* dispatching one announcement that reaches all of them: intake, then ``Dispatcher.handle``
  on the intake entry (audience arithmetic, rendering per language, batches queued);
* delivering those batches with the real channel workers (``Service(parts=["workers"])``)
  until the notice is "done": batches/s and recipients/s;
* the peak RSS of this process and Redis ``used_memory`` after loading.

Run from the project root::

    .venv/bin/python bench/outbox.py --subscribers 20000
    .venv/bin/python bench/outbox.py                  # 200000 LINE subscribers
    .venv/bin/python bench/outbox.py --json           # figures as one JSON object

Everything lives under its own key prefix (``bench:<random>:``) and a temporary outbox
directory; both are removed at the end, also when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from bench.harness import OWNED_ENV, Report, delivered, drop_keys, load
from channels import channel_class
from notifier import intake, logs
from notifier.channel_registry import REGISTRY
from notifier.config import Settings, load_settings
from notifier.dispatch import GROUP as DISPATCH_GROUP
from notifier.dispatch import Dispatcher
from notifier.keys import LANES
from notifier.runtime import Runtime
from notifier.service import Service
from notifier.streams import StreamReply, ensure_group

MiB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--subscribers", type=int, default=200_000, help="N per subscriber channel")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: $NOTIFIER_REDIS_URL or redis://127.0.0.1:6379/0",
    )
    p.add_argument("--channels", default="line", help="comma-separated (default: line)")
    p.add_argument("--timeout", type=float, default=1800.0, help="max seconds for delivery")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    names = [c.strip() for c in args.channels.split(",") if c.strip()]
    unknown = [c for c in names if c not in REGISTRY]
    if not names or unknown:
        p.error(
            f"--channels: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(REGISTRY)}"
        )
    if args.subscribers < 0:
        p.error("--subscribers must be >= 0")
    args.channel_names = list(dict.fromkeys(names))
    return args


def rate(count: float, seconds: float) -> str:
    per_s = count / seconds if seconds > 0 else float("inf")
    return f"{per_s / 1000:.1f}k/s" if per_s >= 1000 else f"{per_s:.0f}/s"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def redis_used_mib(rt: Runtime) -> float:
    info = await rt.redis.info("memory")
    return int(info["used_memory"]) / MiB


def announcement(settings: Settings, channel_names: list[str]) -> dict[str, Any]:
    """An announcement for every area and topic (so it reaches everyone), in a few languages."""
    ward = settings.ward
    translations = {
        "en": {"title": "Bulky waste collection days change", "body": "From December. " * 20},
        "easy": {"title": "おおきい ごみを だす ひが かわります", "body": "12がつ から。" * 20},
    }
    return {
        "title": "粗大ごみの収集日が変わります",
        "body": "12月から粗大ごみの収集日が変わります。くわしくはホームページをご覧ください。" * 10,
        "topics": ward.topic_codes,
        "areas": ward.area_codes,
        "channels": channel_names,
        "url": "https://www.city.nerima.tokyo.jp/kurashi/gomi/",
        "translations": {k: v for k, v in translations.items() if k in ward.language_codes},
    }


async def bench(args: argparse.Namespace, settings: Settings, report: Report) -> None:
    fig, say = report.figures, report.say
    channel_names: list[str] = args.channel_names
    n = args.subscribers
    rt = Runtime.open(settings)
    try:
        await rt.redis.ping()
        fig["redis_used_memory_before_mib"] = round(await redis_used_mib(rt), 1)

        # 1. load
        loaded: dict[str, Any] = {}
        for name in channel_names:
            if channel_class(name).audience != "subscribers":
                continue
            started = time.perf_counter()
            validating, saving = await load(rt, name, n)
            seconds = time.perf_counter() - started
            loaded[name] = {"count": n, "seconds": round(seconds, 3)}
            loaded[name] |= {"validate_seconds": round(validating, 3)}
            loaded[name] |= {"save_seconds": round(saving, 3)}
            say(
                f"subscribers loaded ({name}): {n} in {seconds:.1f} s ({rate(n, seconds)};"
                f" validate {validating:.1f} s, save {saving:.1f} s)"
            )
        fig["load"] = loaded
        fig["peak_rss_after_load_mib"] = round(peak_rss_mib(), 1)
        used = await redis_used_mib(rt)
        fig["redis_used_memory_mib"] = round(used, 1)
        grown = used - fig["redis_used_memory_before_mib"]
        fig["redis_used_memory_for_subscribers_mib"] = round(grown, 1)
        say(f"redis used_memory: {used:.0f} MiB ({grown:+.0f} MiB for the subscribers)")

        # 2. dispatch: audience arithmetic alone, then the whole step on the intake entry
        data = announcement(settings, channel_names)
        notice = intake.validate(data, settings)
        assert notice.id is not None
        audiences: dict[str, Any] = {}
        for name in loaded:
            started = time.perf_counter()
            found = await rt.subscribers.audience(name, notice.areas, notice.topics)
            seconds = time.perf_counter() - started
            audiences[name] = {"recipients": found.size, "seconds": round(seconds, 3)}
            audiences[name] |= {"by_language": {k: len(v) for k, v in found.by_language.items()}}
            say(f"audience ({name}): {found.size} of {n} in {seconds:.2f} s")
            del found  # the dispatcher builds its own: don't count this one in the peak RSS
        fig["audience"] = audiences

        accepted = await intake.enqueue(rt.notices, notice)
        await ensure_group(rt.redis, rt.keys.intake, DISPATCH_GROUP)
        reply = cast(
            "StreamReply",
            await rt.redis.xreadgroup(DISPATCH_GROUP, "bench", {rt.keys.intake: ">"}, count=1),
        )
        ((_stream, ((entry_id, fields),)),) = reply
        dispatcher = Dispatcher(
            settings, rt.redis, rt.keys, rt.templates, rt.subscribers, rt.metrics
        )
        started = time.perf_counter()
        await dispatcher.handle(entry_id.decode(), fields)
        seconds = time.perf_counter() - started
        view = await rt.notices.get(accepted.id)
        if view is None or view["status"] not in ("dispatching", "done"):
            raise RuntimeError(f"dispatch did not queue the notice: {view!r}")
        streams = [rt.keys.delivery(c, lane) for c in channel_names for lane in LANES]
        batches = sum([await rt.redis.xlen(s) for s in streams])
        recipients = sum(view["progress"][c]["recipients"] for c in channel_names)
        fig["dispatch"] = {
            "recipients": recipients,
            "batches": batches,
            "seconds": round(seconds, 3),
            "by_channel": {c: view["progress"][c]["recipients"] for c in channel_names},
        }
        say(f"dispatch: {recipients} recipients in {batches} batches in {seconds:.2f} s")
        fig["redis_used_memory_after_dispatch_mib"] = round(await redis_used_mib(rt), 1)
        fig["peak_rss_after_dispatch_mib"] = round(peak_rss_mib(), 1)

        # 3. delivery with the real workers, in outbox mode
        service = Service(settings, parts=["workers"], channel_names=channel_names)
        view, seconds = await delivered(rt, service, accepted.id, args.timeout)
        progress = view["progress"]
        sent = sum(progress[c]["sent"] for c in channel_names)
        failed = sum(progress[c]["failed"] for c in channel_names)
        fig["delivery"] = {
            "status": view["status"],
            "batches": batches,
            "sent": sent,
            "failed": failed,
            "seconds": round(seconds, 3),
            "batches_per_s": round(batches / seconds, 1),
            "recipients_per_s": round(sent / seconds, 1),
            "by_channel": progress,
        }
        say(
            f"delivery (outbox): {batches} batches in {seconds:.2f} s"
            f" = {batches / seconds:.0f} batches/s, {rate(sent, seconds)} recipients"
            f" (sent {sent}, failed {failed}, status {view['status']})"
        )
        if "line" in channel_names:
            files = sorted((settings.outbox_dir / "line").glob("*.json"))
            ids = sum(len(json.loads(f.read_text(encoding="utf-8"))["to"]) for f in files)
            fig["outbox_line"] = {"files": len(files), "user_ids": ids}
            say(f"outbox check (line): {len(files)} files with {ids} user ids")

        fig["peak_rss_mib"] = round(peak_rss_mib(), 1)
        say(
            f"peak RSS: {fig['peak_rss_mib']:.0f} MiB (after load:"
            f" {fig['peak_rss_after_load_mib']:.0f} MiB, after dispatch:"
            f" {fig['peak_rss_after_dispatch_mib']:.0f} MiB)"
        )
    finally:
        await rt.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(args.json)
    for name in OWNED_ENV:  # the environment wins over load_settings' arguments
        os.environ.pop(name, None)
    logs.setup("WARNING")
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    settings = load_settings(
        redis_url=args.redis_url,
        redis_prefix=prefix,
        outbox_dir=tmp / "outbox",
        print_dir=tmp / "print",
        http_port=0,
        quiet_hours=None,  # a benchmark at night still delivers
    )
    assert settings.redis_prefix == prefix and settings.outbox_dir == tmp / "outbox"
    report.figures |= {"subscribers": args.subscribers, "channels": args.channel_names}
    report.figures |= {"prefix": prefix, "line_batch_size": settings.line_batch_size}
    report.say(
        f"fan-out bench: {args.subscribers} subscriber(s) on {','.join(args.channel_names)},"
        f" prefix {prefix}, outbox {tmp / 'outbox'}"
    )
    failed = False
    try:
        asyncio.run(bench(args, settings, report))
    except Exception as e:
        failed = True
        report.say(f"bench failed: {type(e).__name__}: {e}")
        raise
    finally:
        try:
            deleted = drop_keys(args.redis_url, prefix)
            report.say(f"cleanup: deleted {deleted} key(s) under {prefix}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if args.json and not failed:
            print(json.dumps(report.figures, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
