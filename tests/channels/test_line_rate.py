"""LINE's published rate limit kept with the default limits: a fan-out of more than 400
multicasts against a fake LINE that holds every endpoint to LINE's table over trailing
windows, with no 429 and every resident exactly once; a service faster than LINE allows
is refused, and still reaches everyone once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from notifier.runtime import Runtime
from tests.conftest import LINE_TOKEN, delivering, finished, line_settings, whole_ward_notice
from tests.fake_line import LINE_LIMITS, FakeLine
from tests.notifier.test_redis_restart import residents

RESIDENTS = 2_010  # 402 multicasts of 5 and a few short ones (one share per language)
MULTICAST = "/v2/bot/message/multicast"


async def fan_out(
    tmp_path: Path, prefix: str, runtime: Runtime, fake: FakeLine, **overrides: Any
) -> dict[str, Any]:
    """One whole-ward LINE notice, through a dispatcher and the LINE workers. Multicasts
    of 5 residents cost the service a fraction of LINE's 500: without its limiter it
    would send several times faster than LINE allows."""
    values = {"line_batch_size": 5, "worker_concurrency": 16, **overrides}
    settings = line_settings(tmp_path, prefix, fake.url, **values)
    async with delivering(settings, "line") as service:
        notice_id = await whole_ward_notice(runtime, settings, "line")
        result = await finished(runtime, notice_id, timeout=60)
        refused = service.runtime.metrics.line_refused.labels("multicast", "rate")._value.get()
        result["refused_seen"] = refused
    return result


async def test_a_fan_out_at_the_default_limit_gets_no_429_and_reaches_everyone_once(
    tmp_path: Path, prefix: str, runtime: Runtime, fake_line: FakeLine
) -> None:
    assert runtime.settings.line_rate_limit < LINE_LIMITS[MULTICAST][0]
    everyone = await residents(runtime, RESIDENTS)
    result = await fan_out(tmp_path, prefix, runtime, fake_line)
    assert result["status"] == "done" and result["progress"]["line"]["sent"] == RESIDENTS
    assert len(fake_line.multicasts) > 400
    assert not fake_line.refused and all(s != 429 for _, s in fake_line.responses)
    assert result["refused_seen"] == 0
    reached = Counter(user for m in fake_line.multicasts for user in m["to"])
    assert len(reached) == len(everyone) and set(reached.values()) == {1}


async def test_a_service_faster_than_line_allows_is_refused_and_still_reaches_everyone_once(
    tmp_path: Path, prefix: str, runtime: Runtime
) -> None:
    """What the fake is for: a service that sends faster than LINE allows (here LINE's
    multicast limit is set to 50/s, the service to its default 190/s) meets LINE's 429s,
    which it counts and waits out (no attempt spent): nobody is lost or reached twice."""
    await residents(runtime, 500)
    async with FakeLine(token=LINE_TOKEN, limits={**LINE_LIMITS, MULTICAST: (50, 1.0)}) as fake:
        result = await fan_out(tmp_path, prefix, runtime, fake)
    assert result["status"] == "done" and result["progress"]["line"]["sent"] == 500
    assert fake.refused[MULTICAST] > 0
    assert result["refused_seen"] == fake.refused[MULTICAST]
    reached = Counter(user for m in fake.multicasts for user in m["to"])
    assert len(reached) == 500 and set(reached.values()) == {1}
