"""Ingest and validation benchmark: a landed CSV day into bronze, then silver.

    python -m benchmarks.pipeline --quick           # smoke run (200k rows)
    python -m benchmarks.pipeline --rows 1000000    # the README figures
    python -m benchmarks.pipeline --end-to-end      # the whole pipeline, 1M and 10M rows

What runs, per repeat, on one Adult CSV of `--rows` rows (synthetic Adult rows,
`datasets.adult.synthesize`, 1% of them failing a check, written as the landing writer
writes them), in a fresh folder:

* floor: `pyarrow.csv.read_csv` of the file (Arrow's type inference, all threads) and
  `deltalake.write_deltalake` of the table into a new Delta table;
* ingest: what the ingest flow runs for that day, without Prefect: `fetch_partition` (the
  file's checksum, and its bytes when it is small), `stage_partition` (parsing by Arrow in
  blocks of whole records, `_row_id` and lineage on every row, rejects, each block's rows
  written as a file), `write_partition` (the day's rejects and bronze files, each table one
  atomic Delta commit through `tasks.lake.Lake`).

* validation: `split_valid_rows` (typing and every schema check in Arrow, row-wide checks
  by pandera) of the whole day's bronze (read with text columns dictionary encoded) timed
  alone (`SPLITS` times per repeat), and the whole stage as the validate flow runs it:
  `stage_validated` (bronze read and split a batch at a time, silver and quarantine files
  written) and `commit_validated`.
* memory (`--memory-rows`): the peak RSS of a fresh process that ingests and validates a
  day of each size (files are parsed in blocks and bronze split in batches: it should not
  grow with the day).

Reported: seconds (median of `--repeats`) and rows/s of each; ingest's rows/s as a share
of the floor's (target: >= 50%, issue 14) and the split's rows/s (target: >= 5M rows/s).

`--end-to-end` times the whole daily pipeline as a user runs it instead, for each day size
of `--e2e-rows`, in a fresh `TIDEWATER_HOME`: not timed, `tidewater serve` (Prefect server,
Dask cluster of a worker process per core, worker), `tidewater land adult --days 1` and
`tidewater train` on it (the champion), then one day of synthetic Adult rows landed as one
CSV file; timed, `tidewater run adult --ds D` of that day `--repeats` times (a new process
each time: imports, API, ingest, validate, score on the cluster, monitor, row accounting;
a rerun redoes every stage). Reported: the median wall seconds (target: < 30 s for 1M rows,
< 4 min for 10M), each stage's median seconds from the ledger (the slowest named), and the
`tidewater run` process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SHARE = 0.5
TARGET_VALIDATION = 5_000_000
TARGET_END_TO_END = {1_000_000: 30.0, 10_000_000: 240.0}
DS = "2024-01-01"
SPLITS = 5
"""Times the split is timed per repeat (a fraction of a second each, on a VM whose timings
vary by about 15%): its figure is the median of all."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


FAILING_SHARE = 0.01
"""The share of the benchmark day's rows that fail a check, as in a day from a real
upstream: a third each an age beyond the schema's range, an unknown workclass, and an
education_num that is not its education's rank (a row-wide check)."""


def landed_day(landing: Path, rows: int) -> Path:
    """One day of `rows` Adult rows as a CSV file in the landing layout, `FAILING_SHARE`
    of them failing validation."""
    import numpy as np

    from datasets.adult import NAME, synthesize
    from datasets.landing_writer import encode_landing_file

    frame = synthesize(rows, seed=7)
    frame = frame[[c for c in frame.columns if not c.startswith("_")]]
    failing = np.random.default_rng(7).permutation(rows)[: int(rows * FAILING_SHARE)]
    old_age, unknown_work, wrong_rank = np.array_split(failing, 3)
    frame.loc[old_age, "age"] = 150
    frame["workclass"] = frame["workclass"].astype(object)
    frame.loc[unknown_work, "workclass"] = "Unknown-job"
    frame.loc[wrong_rank, "education_num"] = frame.loc[wrong_rank, "education_num"] % 16 + 1
    path = landing / NAME / f"ds={DS}" / "part-0001.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_landing_file(frame, "csv"))
    return path


def floor(path: Path, folder: Path) -> int:
    import pyarrow.csv as pacsv
    from deltalake import write_deltalake

    table = pacsv.read_csv(path)
    write_deltalake(str(folder / "floor"), table)
    return table.num_rows


def ingest(landing: Path, folder: Path) -> int:
    from datasets import get_dataset
    from tasks.bronze import stage_partition, write_partition
    from tasks.lake import Lake
    from tasks.landing import fetch_partition

    spec, lake = get_dataset("adult"), Lake(str(folder / "lake"))
    contents, _ = fetch_partition.fn(str(landing), spec.name, DS)
    target = (spec.roles.target,)
    staged = stage_partition.fn(lake, contents, spec.name, spec.columns, DS, "bench",
                                spec.landing, target)  # fmt: skip
    write_partition.fn(lake, spec.name, spec.columns, DS, staged, "bench")
    return staged.landed_rows


def validation(folder: Path) -> tuple[float, float, int, int]:
    """(split seconds, stage seconds, rows, rows quarantined) of validating the day ingested
    into `folder`: the split of the whole day at once, and the stage as the flow runs it (in
    batches)."""
    from datasets import get_dataset
    from tasks.lake import Lake
    from tasks.validation import commit_validated, split_valid_rows, stage_validated

    spec, lake = get_dataset("adult"), Lake(str(folder / "lake"))
    bronze = lake.read("bronze", spec.name, {"ds": DS}, dictionaries=spec.columns)
    splits = []
    for _ in range(SPLITS):
        split_started = time.perf_counter()
        split_valid_rows.fn(bronze, spec)
        splits.append(time.perf_counter() - split_started)
    split_s = statistics.median(splits)
    started = time.perf_counter()
    staged = stage_validated.fn(lake, spec, DS, "bench")
    commit_validated.fn(lake, spec, DS, staged, "bench")
    return split_s, time.perf_counter() - started, staged.rows_in, staged.quarantined_count


def peak_memory(landing: Path) -> float:
    """Peak resident MB of a fresh process that ingests and validates the landed day (this
    module run with `--memory-of`)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--memory-of", str(landing)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.split()[-1])


def _ingest_and_validate(landing: Path) -> float:
    """Ingest and validate the landed day in a new folder; this process's peak RSS (MB)."""
    from datasets import get_dataset
    from tasks.lake import Lake
    from tasks.validation import commit_validated, stage_validated

    folder = Path(tempfile.mkdtemp(prefix="tidewater-bench-"))
    try:
        ingest(landing, folder)
        spec, lake = get_dataset("adult"), Lake(str(folder / "lake"))
        commit_validated.fn(lake, spec, DS, stage_validated.fn(lake, spec, DS, "m"), "m")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (`tasks.metering.process_peak_rss`)."""
    from tasks.metering import process_peak_rss

    return process_peak_rss() / (1 << 20)


def end_to_end(rows: int, repeats: int) -> tuple[float, dict[str, float], float]:
    """(median wall seconds, median seconds per stage, largest peak RSS in MB) of `tidewater
    run` for a day of `rows` rows, in a fresh home served as a user serves it."""
    from benchmarks.storage import DAY, STAGES, served_day, stage_seconds

    run = [sys.executable, "-m", "benchmarks.measured_cli", "run", "adult", "--ds", DAY]
    walls, stages, peaks = [], [], []
    with served_day(f"e2e-{rows}", rows, {}) as env:
        peak_file = Path(env["TIDEWATER_HOME"]) / "peak-rss"
        for _ in range(repeats):
            started = time.perf_counter()
            done = subprocess.run(run, env=env | {"TIDEWATER_PEAK_RSS_FILE": str(peak_file)},
                                  capture_output=True, text=True)  # fmt: skip
            walls.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"tidewater run failed:\n{done.stdout}\n{done.stderr}")
            stages.append(stage_seconds(env))
            peaks.append(float(peak_file.read_text()))
            _log(f"{rows:,} rows: tidewater run {walls[-1]:.1f} s, {stages[-1]}")
    median = {stage: statistics.median(run[stage] for run in stages) for stage in STAGES}
    return statistics.median(walls), median, max(peaks)


def print_end_to_end(sizes: list[int], repeats: int) -> None:
    from benchmarks.storage import STAGES

    results = {rows: end_to_end(rows, repeats) for rows in sizes}
    print(f"one day through `tidewater run`, median of {repeats}, {os.cpu_count()} cores\n")
    print("| rows | `tidewater run` s | " + " | ".join(STAGES) + " | peak RSS MB | target |")
    print("|---:|---:|" + "---:|" * len(STAGES) + "---:|---|")
    for rows, (wall, stages, peak) in results.items():
        target = TARGET_END_TO_END.get(rows)
        verdict = (
            "" if target is None else f"< {target:.0f} s: {'met' if wall < target else 'NOT met'}"
        )
        print(f"| {rows:,} | {wall:.1f} | " + " | ".join(f"{stages[s]:.1f}" for s in STAGES)
              + f" | {peak:,.0f} | {verdict} |")  # fmt: skip
    for rows, (_, stages, _) in results.items():
        slowest = max((s for s in STAGES if s != "pipeline"), key=stages.get)
        print(f"{rows:,} rows: the slowest stage is {slowest} ({stages[slowest]:.1f} s)")


def timed(run, repeats: int) -> tuple[float, int]:
    seconds, rows = [], 0
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="tidewater-bench-"))
        try:
            started = time.perf_counter()
            rows = run(folder)
            seconds.append(time.perf_counter() - started)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(seconds), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200k rows, one repeat")
    parser.add_argument("--memory-rows", default="1000000,4000000",
                        help="days whose peak RSS is measured ('' for none)")  # fmt: skip
    parser.add_argument("--memory-of", type=Path, help=argparse.SUPPRESS)  # the child's
    parser.add_argument("--end-to-end", action="store_true",
                        help="time `tidewater run` of a whole day instead")  # fmt: skip
    parser.add_argument("--e2e-rows", default="1000000,10000000",
                        help="day sizes of --end-to-end")  # fmt: skip
    args = parser.parse_args(argv)
    if args.end_to_end:
        print_end_to_end([int(n) for n in args.e2e_rows.split(",")], args.repeats)
        return 0
    if args.memory_of:
        print(f"{_ingest_and_validate(args.memory_of):.0f}")
        return 0
    rows, repeats = (200_000, 1) if args.quick else (args.rows, args.repeats)
    import deltalake  # noqa: F401  (imports are not timed)

    import tasks.bronze  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="tidewater-landing-") as landing_dir:
        landing = Path(landing_dir)
        path = landed_day(landing, rows)
        _log(f"landed {rows:,} rows: {path.stat().st_size / 1e6:.0f} MB")
        floor_s, floor_rows = timed(lambda folder: floor(path, folder), repeats)
        ingest_s, ingest_rows = timed(lambda folder: ingest(landing, folder), repeats)
        validated = Path(tempfile.mkdtemp(prefix="tidewater-bench-"))
        try:
            ingest(landing, validated)
            runs = [validation(validated) for _ in range(repeats + 1)][1:]  # one to warm up
        finally:
            shutil.rmtree(validated, ignore_errors=True)
    split_s = statistics.median(run[0] for run in runs)
    stage_s, valid_rows, quarantined = statistics.median(run[1] for run in runs), *runs[0][2:]
    share = (ingest_rows / ingest_s) / (floor_rows / floor_s)
    print("| step | seconds | rows/s |\n|---|---:|---:|")
    print(f"| floor: read_csv + write_deltalake | {floor_s:.2f} | {floor_rows / floor_s:,.0f} |")
    print(f"| ingest: landing CSV -> bronze | {ingest_s:.2f} | {ingest_rows / ingest_s:,.0f} |")
    print(f"| validation: split (typing + checks) | {split_s:.2f} | {valid_rows / split_s:,.0f} |")
    print(
        f"| validation: stage (read, split, write) | {stage_s:.2f} | {valid_rows / stage_s:,.0f} |"
    )
    verdict = "met" if share >= TARGET_SHARE else "NOT met"
    print(
        f"\ningest at {share:.0%} of the floor's rows/s (target >= {TARGET_SHARE:.0%}: {verdict})"
    )
    split_rate = valid_rows / split_s
    verdict = "met" if split_rate >= TARGET_VALIDATION else "NOT met"
    print(f"validation split at {split_rate:,.0f} rows/s (target >= 5M rows/s: {verdict}); "
          f"{quarantined:,} of {valid_rows:,} rows quarantined")  # fmt: skip
    memory_rows = [int(n) for n in args.memory_rows.split(",") if n and not args.quick]
    if memory_rows:
        print("\n| rows | CSV MB | peak RSS MB (ingest + validation, one process) |")
        print("|---:|---:|---:|")
    for count in memory_rows:
        with tempfile.TemporaryDirectory(prefix="tidewater-landing-") as landing_dir:
            path = landed_day(Path(landing_dir), count)
            size = path.stat().st_size / 1e6
            print(f"| {count:,} | {size:,.0f} | {peak_memory(Path(landing_dir)):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
