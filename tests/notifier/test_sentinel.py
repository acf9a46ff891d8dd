"""Redis under Sentinel (a master, a replica and three Sentinels, real processes): every
process finds the master through Sentinel and follows a failover by itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from notifier.redis_client import survey
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import (
    ROOT,
    announcement,
    delivering,
    finished,
    line_settings,
    make_settings,
    wait_for,
    whole_ward_notice,
)
from tests.fake_line import FakeLine
from tests.notifier.test_redis_restart import residents
from tests.redis_process import Sentinels


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Sentinels]:
    found = Sentinels(tmp_path / "ha")
    yield found
    found.stop()


def test_check_names_the_master_its_replicas_and_the_sentinels_it_reached(
    tmp_path: Path, cluster: Sentinels
) -> None:
    settings = make_settings(tmp_path, "ha:", redis_sentinels=cluster.addresses)
    ok, lines = survey(settings)
    assert ok
    assert f"redis    master 'notifier' answers at 127.0.0.1:{cluster.master.port}" in lines
    assert f"redis    replica at 127.0.0.1:{cluster.replica.port}" in lines
    assert [line for line in lines if line.startswith("sentinel")] == [
        f"sentinel {s.address} reached" for s in cluster.sentinels
    ]
    cluster.sentinels[0].stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_REDIS_SENTINELS=cluster.addresses, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"sentinel {cluster.sentinels[0].address} NOT REACHED" in done.stdout
    assert f"master 'notifier' answers at 127.0.0.1:{cluster.master.port}" in done.stdout


@pytest.mark.timeout(120)
async def test_closing_the_runtime_closes_its_connections_to_the_sentinels_too(
    tmp_path: Path, cluster: Sentinels
) -> None:
    settings = make_settings(tmp_path, "ha:").model_copy(
        update={"redis_sentinels": cluster.addresses}
    )
    runtime = Runtime.open(settings)
    assert await runtime.redis.ping()
    manager = runtime.redis.connection_pool.sentinel_manager  # type: ignore[attr-defined]
    opened = [c for s in manager.sentinels for c in s.connection_pool._available_connections]
    assert any(c.is_connected for c in opened)  # asked for the master
    await runtime.close()
    assert not any(c.is_connected for c in opened)


async def test_the_master_killed_mid_fan_out_the_replica_takes_over_and_everyone_gets_it_once(
    tmp_path: Path, cluster: Sentinels, fake_line: FakeLine
) -> None:
    fake_line.response_delay = 0.2  # the fan-out takes seconds: the failover lands inside it
    settings = line_settings(
        tmp_path,
        "ha:",
        fake_line.url,
        redis_sentinels=cluster.addresses,
        line_batch_size=100,
        visibility_timeout=1.0,
    )
    runtime = Runtime.open(settings)
    await residents(runtime, 3000)
    async with delivering(settings, "line"):
        notice_id = await whole_ward_notice(runtime, settings, "line")

        async def sending() -> bool:
            return len(fake_line.multicasts) >= 2

        await wait_for(sending, timeout=20)
        await asyncio.to_thread(cluster.master.kill)
        await asyncio.to_thread(cluster.wait, lambda: cluster.master_port() == cluster.replica.port)
        view = await finished(runtime, notice_id, timeout=90)
        await runtime.close()
    got = Counter({user: len(messages) for user, messages in fake_line.delivered.items()})
    assert set(got) == {f"U{i:032x}" for i in range(3000)} and set(got.values()) == {1}
    assert view["status"] == "done"
    assert view["progress"]["line"]["sent"] == 3000


async def test_accepted_means_a_replica_holds_it_and_a_retry_never_makes_two(
    tmp_path: Path, cluster: Sentinels
) -> None:
    settings = make_settings(tmp_path, "ha:", redis_sentinels=cluster.addresses)
    assert settings.min_replicas == 1  # Sentinel's default
    runtime = Runtime.open(settings)
    token = await runtime.tokens.create("staff", "desk")
    service = Service(settings, parts=["api"])
    await service.start()
    url = f"http://127.0.0.1:{service.port}/api/announcements"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "ha-1"}
    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.to_thread(cluster.replica.stop)  # no replica to confirm it
            async with http.post(url, json=announcement(), headers=headers) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]["code"] == "not_replicated"
            await asyncio.to_thread(cluster.replica.start)
            await asyncio.to_thread(cluster.wait, cluster.replica_in_sync)
            async with http.post(url, json=announcement(), headers=headers) as r:
                assert r.status == 202
                accepted = await r.json()
        assert await runtime.redis.zrange(runtime.keys.notices, 0, -1) == [accepted["id"].encode()]
        assert await runtime.redis.xlen(runtime.keys.intake) == 1  # one notice, queued once
    finally:
        await service.stop()
        await runtime.close()


@pytest.mark.timeout(120)
async def test_a_notice_accepted_the_moment_before_the_master_dies_is_delivered_after_it(
    tmp_path: Path, cluster: Sentinels, fake_line: FakeLine
) -> None:
    """202 means a replica holds it: the master SIGKILLed right after the answer loses
    nothing. Meanwhile the API answers 503 with Retry-After, never another 5xx, until the
    replica is promoted and has a replica of its own again (the old master, back)."""
    settings = line_settings(tmp_path, "ha:", fake_line.url, redis_sentinels=cluster.addresses)
    runtime = Runtime.open(settings)
    await residents(runtime, 300)
    token = await runtime.tokens.create("staff", "desk")
    api = Service(settings, parts=["api"])
    await api.start()
    url = f"http://127.0.0.1:{api.port}/api/announcements"
    answers: Counter[int] = Counter()
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            body = announcement(channels=["line"], areas=[])
            async with http.post(url, json=body, headers=headers) as r:
                assert r.status == 202
                accepted = await r.json()
            await asyncio.to_thread(cluster.master.kill)
            promoted = False
            for n in range(600):  # through the failover, and until a replica is back
                keyed = {**headers, "Idempotency-Key": f"during-{n}"}
                async with http.post(url, json=body, headers=keyed) as r:
                    answers[r.status] += 1
                    if r.status == 503:
                        assert r.headers["Retry-After"] == "1"
                    elif r.status == 202 and promoted:
                        break
                if not promoted and cluster.master_port() == cluster.replica.port:
                    promoted = True  # the old master comes back, as the new one's replica
                    await asyncio.to_thread(cluster.master.start)
                await asyncio.sleep(0.05)
    finally:
        await api.stop()
    assert set(answers) <= {202, 503} and answers[503] > 0, answers
    async with delivering(settings, "line"):
        view = await finished(runtime, accepted["id"], timeout=90)
        await runtime.close()
    assert view["status"] == "done" and view["progress"]["line"]["sent"] == 300
    assert len(fake_line.delivered) == 300
