"""Monitoring benchmark: full-data drift from histograms vs Evidently's DataDriftPreset.

    python -m benchmarks.monitoring --quick                      # smoke run (200k rows)
    python -m benchmarks.monitoring --rows 1000000,10000000      # the README figures

What runs: a champion (`--trees` rounds, default depth 6) trained on 50k synthetic Adult rows
(`datasets.adult.synthesize`) by `tasks.training.train_classifier`, which also builds its
`ReferenceProfile` and its reference window (the holdout with scores, what Evidently compares
against). Per row count N, a planted-drift day (`synthesize(..., drift=1.0)`) and a clean day
(`drift=0.0`) of N rows each, generated in chunks of 1M rows, encoded by
`tasks.features.feature_matrix` and scored by our forest kernel (neither timed: the score step
does both anyway).

Measured:

* histograms: what full-data drift costs on top of the scoring pass, over **all N rows**: the
  histogram kernel over each chunk's float32 feature matrix and its scores
  (`tasks.profiles.HistogramPass`, CPU twin on all threads), the merge of the chunks, and
  `reports.profile.profile_drift` (PSI / Jensen-Shannon per column). Median of `--repeats`.
* histograms + encode: the same plus `feature_matrix` from the Arrow rows (as if the matrix
  were not already built by the score step: an upper bound).
* Evidently: `reports.drift.build_drift_report` (DataDriftPreset's metrics on the same columns: the
  model's numeric and categorical features and the score, its default stattests) on
  `--evidently-rows` rows of the same day, unsampled (`max_rows=None`), against the same
  reference window. Evidently takes ~64 s and 1.2 GB for 1M rows and runs out of memory at
  10M (STACK-NOTES), so it is timed on fewer rows and compared as rows/s.

Reported: rows/s of each, the ratio (target: histograms >= 50x Evidently's rows/s), and the
per-column drifted verdict of both on the planted-drift day and on the clean day, and whether
they agree. Evidently's verdicts come from its own tests (normed Wasserstein distance >= 0.1 for
numeric columns, Jensen-Shannon distance >= 0.1 for categorical ones, at these sizes); ours
from the same statistics computed on the merged histograms (`HistogramDriftThresholds`
defaults: normed Wasserstein >= 0.1, Jensen-Shannon >= 0.1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

CHUNK_ROWS = 1_000_000
TRAIN_ROWS = 50_000
TARGET_RATIO = 50.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def _csv_ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def train(trees: int):
    from datasets import get_dataset
    from tasks.training import train_classifier

    adult = get_dataset("adult")
    frame = adult.synthesize(TRAIN_ROWS, seed=12345)
    return train_classifier(frame, adult.roles, rounds=trees)


class Day:
    """N synthetic rows in chunks: Arrow rows, float32 feature matrix and scores per chunk."""

    def __init__(self, trained, rows: int, drift: float, seed: int, keep_frame_rows: int):
        import pyarrow as pa

        from datasets import get_dataset
        from kernels import compile_forest, predict
        from tasks.features import feature_matrix

        adult = get_dataset("adult")
        forest = compile_forest(trained.model_json())
        self.rows = rows
        self.tables, self.matrices, self.scores = [], [], []
        self.frame = None
        for index, first in enumerate(range(0, rows, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - first)
            frame = adult.synthesize(n, drift=drift, seed=seed * 1000 + index)
            if self.frame is None:
                self.frame = frame.iloc[:keep_frame_rows].copy()
            elif len(self.frame) < keep_frame_rows:
                more = frame.iloc[: keep_frame_rows - len(self.frame)]
                self.frame = self.frame._append(more, ignore_index=True)
            table = pa.Table.from_pandas(frame[list(trained.spec.names)], preserve_index=False)
            X = feature_matrix(table, trained.spec)
            self.tables.append(table)
            self.matrices.append(X)
            self.scores.append(predict(forest, X, output="probability"))
            del frame


def histogram_drift(trained, day: Day, encode: bool):
    """Full-data drift of `day` from histograms; (drift result, merged counts)."""
    from reports.profile import profile_drift
    from tasks.features import feature_matrix
    from tasks.profiles import HistogramPass, merge_histograms

    parts = []
    for table, X, scores in zip(day.tables, day.matrices, day.scores, strict=True):
        if encode:
            X = feature_matrix(table, trained.spec)
        measured = HistogramPass(trained.profile)
        measured.add(measured.measure(X, scores, "cpu"))
        parts.append(measured.result())
    merged = merge_histograms(trained.profile, parts)
    return profile_drift(trained.profile, merged), merged


def evidently_drift(trained, day: Day):
    import numpy as np

    from reports.drift import build_drift_report

    current = day.frame[list(trained.spec.names)].copy()
    current["score"] = np.concatenate(day.scores)[: len(current)]
    return build_drift_report(
        trained.reference,
        current,
        numeric=trained.spec.numeric,
        categorical=trained.spec.categorical,
        max_rows=None,
    )


def verdict_table(ours, theirs) -> tuple[str, int, int]:
    lines = [
        "| column | ours: method | value | drifted | Evidently: method | value | drifted | agree |",
        "|---|---|---:|---|---|---:|---|---|",
    ]
    agree = 0
    for column in ours.columns:
        other = theirs.column(column.column)
        same = column.drifted == other.drifted
        agree += same
        lines.append(
            f"| {column.column} | {column.method} | {column.value:.3f} | {column.drifted} | "
            f"{other.method} | {other.value:.3f} | {other.drifted} | {'yes' if same else 'NO'} |"
        )
    return "\n".join(lines), agree, len(ours.columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=_csv_ints, help="day sizes (default 1000000,10000000)")
    parser.add_argument(
        "--evidently-rows", type=int, default=200_000, help="rows Evidently is timed on"
    )
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200k rows, 50k for Evidently")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = args.rows or [200_000]
        args.evidently_rows = min(args.evidently_rows, 50_000)
        args.repeats = 1
    args.rows = args.rows or [1_000_000, 10_000_000]

    import warnings

    import numba
    from numba.core.errors import NumbaTypeSafetyWarning

    warnings.filterwarnings("ignore", category=NumbaTypeSafetyWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    _log(_load())
    seconds, trained = _timed(lambda: train(args.trees))
    _log(f"trained {args.trees} trees on {TRAIN_ROWS:,} rows in {seconds:.0f}s")
    # compile / load the kernels once, outside the timings
    histogram_drift(trained, Day(trained, 2048, 0.0, 99, 0), encode=True)

    timings, verdicts = [], []
    evidently_rate = None
    for rows in args.rows:
        seconds, planted = _timed(
            lambda rows=rows: Day(trained, rows, 1.0, 1, min(rows, args.evidently_rows))
        )
        _log(f"planted-drift day of {rows:,} rows built in {seconds:.0f}s; {_load()}")
        hist = statistics.median(
            _timed(lambda day=planted: histogram_drift(trained, day, encode=False))[0]
            for _ in range(args.repeats)
        )
        with_encode = statistics.median(
            _timed(lambda day=planted: histogram_drift(trained, day, encode=True))[0]
            for _ in range(args.repeats)
        )
        ours, merged = histogram_drift(trained, planted, encode=False)
        assert all(int(c.sum()) == rows for c in merged.values())
        _log(f"  histograms: {hist:.3f}s, with encode {with_encode:.3f}s")
        evidently_rows = len(planted.frame)
        ev_seconds, theirs = _timed(lambda day=planted: evidently_drift(trained, day))
        evidently_rate = evidently_rows / ev_seconds
        _log(f"  Evidently on {evidently_rows:,} rows: {ev_seconds:.1f}s; {_load()}")
        timings.append((rows, hist, with_encode, evidently_rows, ev_seconds))
        if rows == min(args.rows):
            verdicts.append((f"planted-drift day (drift=1.0), {rows:,} rows", ours, theirs))
            clean = Day(trained, rows, 0.0, 2, min(rows, args.evidently_rows))
            verdicts.append(
                (
                    f"clean day (drift=0.0), {rows:,} rows",
                    histogram_drift(trained, clean, encode=False)[0],
                    evidently_drift(trained, clean),
                )
            )
            del clean
        del planted

    lines = [
        f"Monitoring benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC): {os.cpu_count()} cores, "
        f"numba threads {numba.get_num_threads()}, model of {args.trees} trees; reference "
        f"profile of {trained.profile.reference_rows:,} holdout rows, Evidently's reference "
        f"window {len(trained.reference):,} rows; {len(trained.profile.columns)} columns "
        f"(features + score); median of {args.repeats}; {_load()} at the end.",
        "",
        "| day rows | histograms s | rows/s | + encode s | rows/s | Evidently rows | "
        "Evidently s | Evidently rows/s | ratio | ratio with encode |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows, hist, with_encode, ev_rows, ev_seconds in timings:
        rate = ev_rows / ev_seconds
        lines.append(
            f"| {rows:,} | {hist:.3f} | {rows / hist:,.0f} | {with_encode:.3f} | "
            f"{rows / with_encode:,.0f} | {ev_rows:,} | {ev_seconds:.1f} | {rate:,.0f} | "
            f"{rows / hist / rate:,.0f}x | {rows / with_encode / rate:,.0f}x |"
        )
    best = min(rows / hist for rows, hist, *_ in timings) / evidently_rate
    lines += [
        "",
        f"Target: histograms >= {TARGET_RATIO:.0f}x Evidently's rows/s: lowest ratio "
        f"{best:,.0f}x: {'PASS' if best >= TARGET_RATIO else 'FAIL'}",
    ]
    for title, ours, theirs in verdicts:
        table, agree, total = verdict_table(ours, theirs)
        lines += [
            "",
            f"Verdicts on the {title}: agree on {agree} of {total} columns; "
            f"drifted share ours {ours.drifted_share:.2f}, Evidently {theirs.drifted_share:.2f}; "
            f"dataset drift ours {ours.dataset_drift}, Evidently {theirs.dataset_drift}.",
            "",
            table,
        ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
