"""Backfill benchmark: N days through `tidewater backfill` against N sequential `tidewater run`.

    python -m benchmarks.backfill                         # the README figures (30 days)
    python -m benchmarks.backfill --days 6 --modes deployment:2,local:2   # a quick look

What runs, as a user runs it, in a fresh `TIDEWATER_HOME`: `tidewater land adult --days N`
(the UCI Adult data cut into N daily partitions, about 48,842 / N rows each, bad files
included), `tidewater serve` (Prefect server, Dask cluster, reports server, worker), and
`tidewater train` on the first day, so that no mode pays for the first model. Then, timed:

* anchor: `tidewater run adult --ds D` for each of the N days, one after the other (each a
  new process: imports, the API check, the served cluster, the pipeline);
* each mode `deployment:P` / `local:P`: `tidewater backfill adult --start D1 --end DN
  --policy all --max-parallel P` (with `--local` for `local:P`), which reruns every stage of
  every day, the same work as the anchor: one flow run per day, run by P lanes (flow runs
  of the dataset's backfill deployment on the served worker), or by P threads of the
  backfill's own process.

Reported: wall seconds, seconds per day and the speedup over the anchor per mode (target:
a backfill of 30 small days >= 3x faster than 30 sequential `tidewater run`), and the
pipeline flow's own seconds per day (from the ledger) and the rest per day: wall / N minus
flow seconds / days at once, i.e. what each day costs outside its flow (a process and its
imports per `tidewater run`, a lane's start, polling, the flow-run creation).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
TARGET_SPEEDUP = 3.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tidewater(env: dict[str, str], *args: str, check: bool = True) -> tuple[float, str | None]:
    """Seconds `tidewater ARGS` took, and how it failed (None if it did not); with `check`,
    a failure raises instead."""
    started = time.perf_counter()
    done = subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True)
    failure = None
    if done.returncode != 0:
        failure = f"tidewater {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        if check:
            raise RuntimeError(failure)
    return time.perf_counter() - started, failure


def _pipeline_seconds(home: Path, since: float) -> float:
    """Seconds the pipeline flows recorded since `since` (a time.time()) took, in all."""
    from datetime import UTC, datetime

    from tasks.lake import Lake
    from tasks.ledger import read_ledger

    ledger = read_ledger(Lake(str(home / "lake")), "adult")
    runs = ledger[
        (ledger["stage"] == "pipeline")
        & (ledger["started_at"] >= datetime.fromtimestamp(since, UTC))
    ]
    return float(runs["wall_seconds"].sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--modes", default="deployment:1,deployment:2,deployment:4,local:2")
    parser.add_argument("--start", default="2024-01-01")
    args = parser.parse_args(argv)
    first = date.fromisoformat(args.start)
    days = [(first + timedelta(days=n)).isoformat() for n in range(args.days)]
    home = Path(tempfile.mkdtemp(prefix="tidewater-bench-backfill-"))
    env = os.environ | {"TIDEWATER_HOME": str(home), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)  # the embedded server `serve` starts in this home
    # name, days at once, wall, pipeline seconds, whether every day succeeded
    results: list[tuple[str, int, float, float, bool]] = []
    try:
        _log(f"landing {args.days} days of adult under {home}")
        _tidewater(env, "land", "adult", "--start", days[0], "--days", str(args.days))
        _log("starting the services (tidewater serve) and training the first model")
        _tidewater(env, "serve")
        _tidewater(env, "train", "adult", "--start", days[0], "--days", "1")

        since = time.time()
        wall = sum(_tidewater(env, "run", "adult", "--ds", ds)[0] for ds in days)
        results.append(("sequential tidewater run", 1, wall, _pipeline_seconds(home, since), True))
        _log(f"sequential: {wall:.0f} s")
        for mode in args.modes.split(","):
            kind, parallel = mode.split(":")
            since = time.time()
            wall, failure = _tidewater(
                env,
                "backfill", "adult", "--start", days[0], "--end", days[-1], "--policy", "all",
                "--max-parallel", parallel, *(["--local"] if kind == "local" else []),
                check=False,
            )  # fmt: skip
            name = f"backfill {kind} max-parallel {parallel}"
            pipeline = _pipeline_seconds(home, since)
            results.append((name, int(parallel), wall, pipeline, failure is None))
            failed = f", FAILED (not counted):\n{failure[-3000:]}" if failure else ""
            _log(f"{mode}: {wall:.0f} s{failed}")
    finally:
        subprocess.run([TIDEWATER, "serve", "--stop"], env=env, capture_output=True)
    anchor, n = results[0][2], args.days
    print(f"\n{n} days of adult (~{48842 // n:,} rows each), {os.cpu_count()} cores")
    print(
        f"{'':36} {'wall s':>7} {'s/day':>6} {'speedup':>8} {'flow s/day':>11} {'rest s/day':>11}"
    )
    for name, at_once, wall, pipeline, succeeded in results:
        flow = pipeline / n  # the pipeline flow's own wall per day
        rest = wall / n - flow / at_once  # per day outside it (process, imports, polling)
        speedup = f"{anchor / wall:7.2f}x" if succeeded else " failed"
        print(f"{name:36} {wall:7.0f} {wall / n:6.1f} {speedup:>8} {flow:11.1f} {rest:11.1f}")
    best = max((anchor / wall for *_, wall, _, ok in results[1:] if ok), default=0.0)
    verdict = "met" if best >= TARGET_SPEEDUP else "NOT met"
    print(f"target: a backfill >= {TARGET_SPEEDUP:.0f}x faster than sequential runs: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
