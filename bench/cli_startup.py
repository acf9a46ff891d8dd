"""How long the quick `notifier` commands take, each in a fresh process as an operator runs
them: `notifier --help`, `notifier token create … --replace` (the tour's step 1) and
`notifier check`. The target is 0.5 s for each (the median of the runs); the max and the
CPU time each process used are printed too, and the load average, since other work on a
2-core machine stretches the wall-clock times.

Run from the project root::

    .venv/bin/python bench/cli_startup.py             # 5 runs of each
    .venv/bin/python bench/cli_startup.py --runs 20
    .venv/bin/python bench/cli_startup.py --module    # `python -m notifier`, not the script

The commands use a redis-server of the bench's own (or NOTIFIER_REDIS_URL's Redis) under a
prefix of their own (``bench-cli:<random>:``), whose keys are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from tests.redis_process import RedisProcess

ROOT = Path(__file__).resolve().parent.parent

TARGET = 0.5  # seconds, each command
COMMANDS = {
    "notifier --help": ["--help"],
    "notifier token create --role staff --name 広報課 --replace": [
        "token",
        "create",
        "--role",
        "staff",
        "--name",
        "広報課",
        "--replace",
    ],
    "notifier check": ["check"],
}


def command_line(module: bool) -> list[str]:
    """The console script beside this Python (``.venv/bin/notifier``), or ``python -m``."""
    script = Path(sys.executable).parent / "notifier"
    if module or not script.exists():
        return [sys.executable, "-m", "notifier"]
    return [str(script)]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from start to exit, and the CPU seconds (user and system) the process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return took, cpu


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    p.add_argument("--module", action="store_true", help="run `python -m notifier`")
    args = p.parse_args()

    prefix = f"bench-cli:{uuid.uuid4().hex[:8]}:"
    own: RedisProcess | None = None
    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("NOTIFIER_REDIS_URL")
        if url is None:
            own = RedisProcess(Path(folder) / "redis", fsync="everysec")
            own.start()
            url = own.url
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env.update(
            NOTIFIER_REDIS_URL=url,
            NOTIFIER_REDIS_PREFIX=prefix,
            NOTIFIER_OUTBOX_DIR=str(Path(folder) / "outbox"),
            NOTIFIER_PRINT_DIR=str(Path(folder) / "print"),
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]),
        )
        base = command_line(args.module)
        try:
            print(f"{args.runs} runs each of {' '.join(base)} …, Redis {url}, prefix {prefix}")
            print(f"load average before: {load()}")
            met = True
            for name, argv in COMMANDS.items():
                runs = [timed([*base, *argv], env) for _ in range(args.runs)]
                walls, cpus = [w for w, _ in runs], [c for _, c in runs]
                median, worst = statistics.median(walls), max(walls)
                ok = median <= TARGET
                met = met and ok
                print(
                    f"{name}: median {median:.3f} s, max {worst:.3f} s, CPU median "
                    f"{statistics.median(cpus):.3f} s (median ≤ {TARGET} s: "
                    f"{'met' if ok else 'NOT met'})"
                )
            print(f"load average after: {load()} (other work on the machine stretches the times)")
            return 0 if met else 1
        finally:
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
            if own is not None:
                own.shutdown()


if __name__ == "__main__":
    sys.exit(main())
