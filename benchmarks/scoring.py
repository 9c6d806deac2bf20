"""Scoring benchmark: rows/s end to end for the score step (read -> encode -> predict -> commit).

    python -m benchmarks.scoring --quick                     # smoke run (200k rows, 100 trees)
    python -m benchmarks.scoring --rows 1000000 --workers 1,2
    python -m benchmarks.scoring --rows 1000000,10000000 --shard-rows 262144,1000000

What runs: a fresh TIDEWATER_HOME (or `--home`) with the embedded Prefect server; synthetic
Adult silver rows (`--rows`, one `ds` per row count, written chunk-wise in Delta row groups of
`--row-group-rows`); a champion of `--trees` trees of depth `--depth` trained once on 50k
synthetic rows (cached under the temp dir, like `benchmarks.forest`); then, per worker count,
a local Dask cluster of that many single-threaded CPU workers (and a LocalCUDACluster when a GPU
is present) on which the `score` flow is run `--repeats` times per (rows, shard size).

Measured:

* score-step seconds: wall time of the whole `score` flow call as the driver sees it (flow
  run creation, cluster inspection, model resolution, shard planning, every `score_shard`
  task, the Delta commit of the predictions, the ledger row), median of `--repeats` runs.
  Workers are warmed once per cluster (model loaded, kernels compiled) before the timed runs,
  so this is the steady-state cost of a day on a long-lived cluster; the warm-up is printed.
* rows/s: rows scored / score-step seconds.
* pure kernel time K: the same rows, read shard by shard from the same silver partition and cut
  into the same `score_batch_rows` batches as `score_shard` does, timed in a separate process on
  one thread (`numba.set_num_threads(1)`) for exactly `feature_matrix(batch)` (the encode
  kernel, with its Arrow casts) plus `kernels.predict(forest, X, output="probability")`; median
  over `--kernel-repeats` passes. Reading Parquet and building the predictions table are not
  kernel time. On a GPU, K is the same two calls on the device, including the host<->device copies.
* parallel kernel time K_w: the same pure kernels with the shards dealt round robin to `workers`
  single-threaded processes that start together and do nothing else (no Dask, no Prefect, no
  reads or writes in the timed part); the slowest process's seconds, median over passes. It is
  the time a perfect orchestrator would need on this machine: with 2 processes on 2 cores each
  kernel runs slower than alone (shared caches and memory bandwidth), which is the hardware's
  and not orchestration. K_1 is K. On a GPU (one worker per device) K_w = K.
* overhead = score-step seconds - K_w; overhead % is that share of the score-step seconds. The
  same against K / workers (a perfect split of the single-thread kernel time, the machine's
  parallel slowdown counted as overhead) is printed beside it.
* scaling vs 1 worker: rows/s of this run / rows/s of the 1-worker run at the same rows and
  shard size.

Targets (issue #4): overhead under 15% at 10M rows; scaling 1 -> 2 workers at 10M rows >= 1.7x.

Full-data drift (issue #10): the champion is stored with its reference profile, so the score step
also counts the histograms of its features and scores (`--histograms on`, the default: what users
run). `--histograms off` scores with the same model stored without a profile (no histogram
pass, as for models trained before profiles); `--histograms both` registers both and alternates
them run by run on the same warm cluster, reporting the histogram pass's share of the score
step (target < 10% at 10M rows). `--kernel-repeats 0` skips K (the kernel-only timings).

A breakdown per run (from the ledger's per-shard seconds and the Prefect API's task runs) says
where the time goes: the span of the shard phase, the sum of in-task seconds (read + kernels +
predictions table), the Delta commit, and the rest (Prefect flow/task orchestration, driver).
A separate single-thread stage profile (read, encode, predict, predictions table, pickling of a
shard's result, Delta commit) is printed for the first row count. On a 2-core machine the
driver, the scheduler and the Prefect server share the cores with the workers: the 2-worker
runs measure that too. The load average is printed; other processes running alongside inflate
every number.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")

DATASET = "adult"
TRAIN_ROWS = 50_000
CHUNK_ROWS = 1_000_000
OVERHEAD_TARGET = 0.15
SCALING_TARGET = 1.7
TARGET_ROWS = 10_000_000


@dataclass
class Case:
    """Timings of one (rows, workers, device, shard rows) configuration."""

    rows: int
    workers: int
    device: str
    shard_rows: int
    shards: int = 0
    walls: list[float] = field(default_factory=list)
    kernel: float = 0.0  # K: single-thread kernel seconds for all rows (see the docstring)
    parallel_kernel: float = 0.0  # K_w: the kernels alone on `workers` processes at once
    breakdown: dict[str, float] = field(default_factory=dict)
    walls_off: list[float] = field(default_factory=list)  # --histograms both: without them

    @property
    def histogram_overhead(self) -> float:
        """(with - without) / without, medians of the alternated runs."""
        without = statistics.median(self.walls_off)
        return (self.wall - without) / without

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall

    @property
    def split(self) -> float:
        return self.kernel / self.workers

    @property
    def overhead(self) -> float:
        return (self.wall - self.parallel_kernel) / self.wall

    @property
    def overhead_vs_split(self) -> float:
        return (self.wall - self.split) / self.wall


def _csv_ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def _quiet_numba() -> None:
    """Silence the encode kernel's read-only-array cast warning (Arrow buffers are read-only)."""
    import warnings

    from numba.core.errors import NumbaTypeSafetyWarning

    warnings.filterwarnings("ignore", category=NumbaTypeSafetyWarning)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


# --- setup: model, silver ------------------------------------------------------------------


def trained_model(trees: int, depth: int):
    """A `TrainedModel` of `trees` rounds of max depth `depth` on 50k synthetic rows."""
    from datasets import get_dataset
    from tasks.training import train_classifier

    adult = get_dataset(DATASET)
    frame = adult.synthesize(TRAIN_ROWS, seed=12345)
    seconds, trained = _timed(
        lambda: train_classifier(frame, adult.roles, rounds=trees, params={"max_depth": depth})
    )
    _log(f"  trained {trees} trees of depth {depth} on {TRAIN_ROWS:,} rows in {seconds:.0f}s")
    return trained


def register_champion(settings, trained) -> str:
    from datasets import get_dataset
    from flows.resources import registry_of
    from tasks.training import register_model

    store = registry_of(settings)
    roles = get_dataset(DATASET).roles
    card = register_model.fn(store, DATASET, roles, trained, {"ds": ["synthetic"]}, promote=True)
    return card.version


def seed_silver(settings, ds: str, rows: int) -> float:
    """`rows` synthetic silver rows as the `ds` slice, built chunk-wise into one Arrow table and
    written in one commit (row groups of `settings.lake_row_group_rows`). Returns seconds."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from datasets import get_dataset
    from flows.resources import lake_of
    from tasks.validation import silver_schema

    adult = get_dataset(DATASET)
    schema = silver_schema(adult)
    started = time.perf_counter()
    chunks = []
    for index, first in enumerate(range(0, rows, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, rows - first)
        frame = adult.synthesize(n, seed=index)
        frame["_row_id"] = [f"{ds}-{i:09d}" for i in range(first, first + n)]
        frame["_source"] = "synthetic"
        frame["_line"] = np.arange(first, first + n)
        frame["_ingested_at"] = pd.Timestamp("2024-01-01", tz="UTC")
        frame["ds"] = ds
        frame["_run_id"] = "seed"
        chunks.append(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
        del frame
    table = pa.concat_tables(chunks)
    del chunks
    lake_of(settings).replace_slice("silver", DATASET, table, {"ds": ds}, run_id="seed")
    return time.perf_counter() - started


# --- pure kernel time and stage profile ------------------------------------------------------


def _model_ref(settings, version: str):
    from flows.resources import registry_of
    from tasks.scoring import ModelRef

    return ModelRef.resolve(registry_of(settings), DATASET, version, "champion")


def kernel_seconds(
    settings, version: str, ds: str, shard_rows: int, device: str, repeats: int, processes: int = 1
) -> float:
    """K_p: `feature_matrix` + `predict` over every batch of every shard, with the shards dealt
    round robin to `processes` single-threaded processes that start each pass together and do
    nothing else; the slowest process's seconds, median of `repeats` passes. K = K_1."""
    import multiprocessing

    from flows.resources import lake_of
    from tasks.scoring import plan_shards

    shards = plan_shards.fn(
        lake_of(settings), DATASET, ds, shard_rows, settings.shard_bytes, min_shards=processes
    )
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(
            target=_kernel_process,
            args=(settings, version, shards[i::processes], device, repeats, start, results),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    passes: list[list[float]] = [[] for _ in range(repeats)]
    for _ in range(processes * repeats):
        index, seconds = results.get(timeout=3600)
        passes[index].append(seconds)
    for worker in workers:
        worker.join()
    return statistics.median(max(seconds) for seconds in passes)


def _kernel_process(settings, version, shards, device, repeats, start, results) -> None:
    """One process of `kernel_seconds`: read its shards and cut them into `score_batch_rows`
    batches as `score_shard` does, warm up, then per pass wait for the others and time
    `feature_matrix` + `predict` (with the device's copies back) over all its batches."""
    import numba

    from flows.resources import lake_of
    from kernels import predict
    from tasks.features import feature_matrix
    from tasks.scoring import cached_forest, read_shard

    _quiet_numba()
    numba.set_num_threads(1)
    card, forest = cached_forest(_model_ref(settings, version))
    spec = card.feature_spec
    columns = sorted({"_row_id", *spec.names})
    store = lake_of(settings).store
    sync = _device_sync(device)

    def kernels(batch) -> None:
        X = feature_matrix(batch, spec, device=device)
        probability = predict(forest, X, device=device, output="probability")
        if hasattr(probability, "get"):
            probability.get()
        sync()

    batches = []
    for shard in shards:
        rows = read_shard(shard, columns, store, spec.categorical)
        batches += [rows.slice(at, settings.score_batch_rows)
                    for at in range(0, rows.num_rows, settings.score_batch_rows)]  # fmt: skip
    kernels(batches[0].slice(0, 1024))
    for index in range(repeats):
        start.wait()
        began = time.perf_counter()
        for batch in batches:
            kernels(batch)
        results.put((index, time.perf_counter() - began))


def _device_sync(device: str) -> Callable[[], None]:
    if device != "gpu":
        return lambda: None
    import cupy

    return lambda: cupy.cuda.Device().synchronize()


def stage_profile(settings, version: str, ds: str, rows: int) -> dict[str, float]:
    """Single-thread seconds per stage of scoring all `rows` of `ds` in this process: read,
    encode, predict, the histograms of full-data drift (when the model has a profile),
    building the predictions table, staging it as a data file (what a worker does with its
    result), and the driver's commit of the staged files."""
    import numba

    from flows.resources import lake_of
    from kernels import predict
    from tasks.features import feature_matrix
    from tasks.lake import Lake
    from tasks.profiles import HistogramPass
    from tasks.registry import load_profile
    from tasks.scoring import PREDICTIONS_SCHEMA, cached_forest, plan_shards, read_shard, score_rows

    numba.set_num_threads(1)
    model = _model_ref(settings, version)
    card, forest = cached_forest(model)
    stored_profile = load_profile(model.profile_uri, model.store)
    histograms = HistogramPass(stored_profile) if stored_profile is not None else None
    spec = card.feature_spec
    columns = sorted({"_row_id", *spec.names})
    lake = lake_of(settings)
    shards = plan_shards.fn(lake, DATASET, ds, settings.shard_rows, settings.shard_bytes)
    scratch = Lake(str(Path(settings.home) / "scratch-lake"), {}, settings.lake_row_group_rows)
    slice_ = {"ds": ds, "model_version": version}
    warm = read_shard(shards[0], columns, lake.store).slice(0, 1024)
    predict(forest, feature_matrix(warm, spec), output="probability")
    out = {"read": 0.0, "encode": 0.0, "predict": 0.0, "score_rows": 0.0, "stage": 0.0}
    staged = []
    for shard in shards:
        seconds, table = _timed(
            lambda s=shard: read_shard(s, columns, lake.store, spec.categorical)
        )
        out["read"] += seconds
        seconds, X = _timed(lambda t=table: feature_matrix(t, spec))
        out["encode"] += seconds
        seconds, probability = _timed(lambda x=X: predict(forest, x, output="probability"))
        out["predict"] += seconds
        if histograms is not None:
            out["histograms"] = (
                out.get("histograms", 0.0)
                + _timed(lambda x=X, p=probability: histograms.measure(x, p, "cpu"))[0]
            )
        seconds, (predictions, _, _) = _timed(
            lambda t=table: score_rows(t, [model], ds, "0" * 32, "cpu", settings.score_batch_rows)
        )
        out["score_rows"] += seconds
        seconds, file = _timed(
            lambda p=predictions[version]: scratch.stage_file(
                "predictions", DATASET, p, slice_, unique=("_row_id",)
            )
        )
        out["stage"] += seconds
        staged.append(file)
    # score_rows = encode + predict + building the predictions table
    out["predictions_table"] = max(0.0, out.pop("score_rows") - out["encode"] - out["predict"])
    out["commit"] = _timed(
        lambda: scratch.commit_files(
            "predictions",
            DATASET,
            staged,
            PREDICTIONS_SCHEMA,
            slice_,
            run_id="profile",
            partition_by=("ds", "model_version"),
        )
    )[0]
    shutil.rmtree(Path(settings.home) / "scratch-lake", ignore_errors=True)
    out["rows"] = rows
    return out


# --- flow runs ---------------------------------------------------------------------------------


def warm_workers(address: str, settings, version: str, device: str) -> float:
    """Load the model and compile the kernels once on every worker. Returns seconds."""
    from distributed import Client

    model = _model_ref(settings, version)

    def warm() -> None:
        import pyarrow as pa

        from tasks.scoring import _match_worker_threads, cached_forest, score_and_profile_rows

        _quiet_numba()
        _match_worker_threads()
        card, _ = cached_forest(model)
        names = card.feature_spec.names
        table = pa.table({name: pa.nulls(64) for name in names} | {"_row_id": ["w"] * 64})
        score_and_profile_rows(table, [model], "2000-01-01", "warm", device, 64)

    with Client(address) as client:
        return _timed(lambda: client.run(warm))[0]


def _api():
    """This run's Prefect API (the embedded server), whatever the active profile says."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]})


def _score_with(settings, runner, ds: str) -> dict:
    from flows.score import score
    from flows.settings import use_settings

    with use_settings(settings):
        return score.with_options(task_runner=runner)(DATASET, ds)


def run_score(settings, ds: str) -> tuple[float, str]:
    """One timed `score` flow run on `settings.dask_address`; (seconds, flow run id)."""
    from flows.resources import lake_of
    from tasks.cluster import ClusterSpec, dask_task_runner
    from tasks.ledger import read_ledger

    runner = dask_task_runner(settings.dask_address, ClusterSpec())
    with _api():
        seconds, result = _timed(lambda: _score_with(settings, runner, ds))
    ledger = read_ledger(lake_of(settings), DATASET, ds)
    entry = ledger[ledger["stage"] == "score"].iloc[-1]
    if entry["status"] != "succeeded" or result["scored"] != entry["rows_out"]:
        raise RuntimeError(f"score run failed: {entry.to_dict()}")
    return seconds, str(entry["run_id"])


def run_breakdown(settings, ds: str, run_id: str, wall: float) -> dict[str, float]:
    """Where one flow run's time went, from its ledger row and its Prefect task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.resources import lake_of
    from tasks.ledger import read_ledger

    ledger = read_ledger(lake_of(settings), DATASET, ds)
    entry = ledger[ledger["run_id"] == run_id].iloc[-1]
    shards = entry["details"]["shards"]
    deadline = time.monotonic() + 30
    with _api(), get_client(sync_client=True) as client:
        while True:  # task run states reach the API as events, a little after the run
            flow_run = client.read_flow_run(run_id)
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
            )
            spans: dict[str, list] = {}
            for run in runs:
                if run.start_time and run.end_time:
                    spans.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
            complete = len(spans.get("score-shard", [])) >= len(shards) and spans.get(
                "commit-predictions"
            )
            if (complete and flow_run.end_time) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    shard_runs = spans.get("score-shard", [])
    if not shard_runs or not flow_run.start_time:
        return {}
    first = min(r.start_time for r in shard_runs)
    last = max(r.end_time for r in shard_runs)
    flow_seconds = flow_run.total_run_time.total_seconds()
    shard_phase = (last - first).total_seconds()
    before = (first - flow_run.start_time).total_seconds()
    commit = sum(r.total_run_time.total_seconds() for r in spans.get("commit-predictions", []))
    return {
        "outside": wall - flow_seconds,
        "before": before,
        "shard_phase": shard_phase,
        "commit": commit,
        "after": flow_seconds - before - shard_phase - commit,
        "in_task": sum(s["seconds"] for s in shards),
        "task_run": sum(r.total_run_time.total_seconds() for r in shard_runs),
    }


def _clusters(workers: Sequence[int], gpu: bool, no_cpu: bool) -> list[tuple[int, str]]:
    cases = [] if no_cpu else [(w, "cpu") for w in workers]
    if gpu:
        cases.append((0, "gpu"))  # a LocalCUDACluster: one worker per visible GPU
    return cases


def bench(args: argparse.Namespace) -> tuple[list[Case], dict[str, float] | None]:
    from deployments.server import ensure_prefect_api, stop_server
    from flows.resources import registry_of
    from flows.settings import Settings
    from kernels import gpu_available
    from tasks.cluster import ClusterSpec, local_cluster

    gpu = gpu_available() and not args.no_gpu
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="tidewater-bench-"))
    configured = os.environ.get("PREFECT_API_URL")
    _log(f"home {home}; starting the Prefect API ...")
    ensure_prefect_api(home)
    settings = Settings(
        home=home, lake_row_group_rows=args.row_group_rows, score_batch_rows=args.batch_rows
    )
    store = registry_of(settings)
    try:
        seconds, trained = _timed(lambda: trained_model(args.trees, args.depth))
        versions = {}
        if args.histograms in ("on", "both"):
            versions["on"] = register_champion(settings, trained)
        if args.histograms in ("off", "both"):
            versions["off"] = register_champion(settings, replace(trained, profile=None))
        version = next(iter(versions.values()))
        _log(f"model {versions}: {args.trees} trees, depth {args.depth} "
             f"(ready in {seconds:.0f}s)")  # fmt: skip
        days = {rows: (date(2024, 3, 1) + timedelta(days=i)).isoformat() for i, rows in
                enumerate(args.rows)}  # fmt: skip
        for rows, ds in days.items():
            seconds = seed_silver(settings, days[rows], rows)
            _log(f"silver ds={ds}: {rows:,} rows in {seconds:.0f}s")

        profile = None
        if not args.no_profile:
            first = min(args.rows)
            run = settings.model_copy(update={"shard_rows": max(args.shard_rows)})
            profile = stage_profile(run, version, days[first], first)

        kernels: dict[tuple[int, str, int], float] = {}
        cases: list[Case] = []
        for workers, device in _clusters(args.workers, gpu, args.no_cpu):
            spec = ClusterSpec(workers=workers or None, device="auto" if device == "gpu" else "cpu")
            _log(f"cluster: {workers or 'one per GPU'} {device} workers; {_load()}")
            with local_cluster(spec) as address:
                warm = sum(warm_workers(address, settings, v, device) for v in versions.values())
                _log(f"  workers warmed in {warm:.1f}s (model load + kernel compile/cache load)")
                for rows, ds in days.items():
                    for shard_rows in args.shard_rows:
                        run = settings.model_copy(
                            update={"dask_address": address, "shard_rows": shard_rows,
                                    "device": device}
                        )  # fmt: skip
                        case = Case(rows, workers or 1, device, shard_rows)
                        for _ in range(args.repeats):
                            for mode, champion in versions.items():
                                if len(versions) > 1:
                                    store.set_alias(DATASET, "champion", champion)
                                seconds, run_id = run_score(run, ds)
                                off = mode == "off" and len(versions) > 1
                                (case.walls_off if off else case.walls).append(seconds)
                                _log(f"  {rows:,} rows, shards of {shard_rows:,}, histograms "
                                     f"{mode}: {seconds:.2f}s")  # fmt: skip
                        if len(versions) > 1:
                            store.set_alias(DATASET, "champion", versions["on"])
                            run_id = run_score(run, ds)[1]  # the breakdown's run: with them
                        case.breakdown = run_breakdown(run, ds, run_id, seconds)
                        case.shards = _shards_run(run, ds)
                        key = (rows, device, shard_rows)
                        if args.kernel_repeats == 0:
                            cases.append(case)
                            continue
                        if key not in kernels:
                            kernels[key] = kernel_seconds(
                                run, version, ds, shard_rows, device, args.kernel_repeats
                            )
                            _log(f"  kernel time K = {kernels[key]:.2f}s; {_load()}")
                        case.kernel = case.parallel_kernel = kernels[key]
                        if device == "cpu" and workers > 1:
                            case.parallel_kernel = kernel_seconds(
                                run, version, ds, shard_rows, device, args.kernel_repeats, workers
                            )
                            _log(f"  kernels alone on {workers} processes: "
                                 f"{case.parallel_kernel:.2f}s; {_load()}")  # fmt: skip
                        cases.append(case)
        return cases, profile
    finally:
        if not configured:
            stop_server(home)
            os.environ.pop("PREFECT_API_URL", None)
        if not args.home and not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def _shards_run(settings, ds: str) -> int:
    """How many shards the last score run of `ds` used, as its ledger row records."""
    from flows.resources import lake_of
    from tasks.ledger import read_ledger

    ledger = read_ledger(lake_of(settings), DATASET, ds)
    return len(ledger[ledger["stage"] == "score"].iloc[-1]["details"]["shards"])


# --- report ------------------------------------------------------------------------------------


def _baseline(cases: list[Case], case: Case) -> Case | None:
    for other in cases:
        if (other.rows, other.shard_rows, other.device, other.workers) == (
            case.rows,
            case.shard_rows,
            "cpu",
            1,
        ):
            return other
    return None


def table(cases: list[Case]) -> str:
    head = [
        "rows",
        "workers",
        "device",
        "shard rows (shards)",
        "score-step s",
        "rows/s",
        "kernel s (K_w)",
        "overhead %",
        "K/workers s",
        "overhead vs K/workers",
        "scaling vs 1 worker",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for c in cases:
        base = _baseline(cases, c)
        scaling = f"{c.rows_per_second / base.rows_per_second:.2f}x" if base else "n/a"
        lines.append(
            f"| {c.rows:,} | {c.workers} | {c.device} | {c.shard_rows:,} ({c.shards}) | "
            f"{c.wall:.2f} | {c.rows_per_second:,.0f} | {c.parallel_kernel:.2f} | "
            f"{c.overhead:.1%} | {c.split:.2f} | {c.overhead_vs_split:.1%} | {scaling} |"
        )
    return "\n".join(lines)


def breakdown_table(cases: list[Case]) -> str:
    head = [
        "rows",
        "workers",
        "shard rows",
        "score-step s",
        "flow start/end s",
        "before shards s",
        "shard phase s",
        "commit s",
        "after s",
        "Σ in-task s",
        "Σ task-run s",
        "K s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for c in cases:
        b = c.breakdown
        if not b:
            continue
        lines.append(
            f"| {c.rows:,} | {c.workers} {c.device} | {c.shard_rows:,} | {c.wall:.2f} | "
            f"{b['outside']:.2f} | {b['before']:.2f} | {b['shard_phase']:.2f} | "
            f"{b['commit']:.2f} | {b['after']:.2f} | {b['in_task']:.2f} | {b['task_run']:.2f} | "
            f"{c.kernel:.2f} |"
        )
    return "\n".join(lines)


def profile_table(profile: dict[str, float]) -> str:
    rows = profile["rows"]
    stages = ["read", "encode", "predict", "histograms", "predictions_table", "stage", "commit"]
    stages = [stage for stage in stages if stage in profile]
    total = sum(profile[s] for s in stages)
    lines = [
        f"Single-thread stage profile, {rows:,} rows in this process:",
        "",
        "| stage | seconds | share | rows/s |",
        "|---|---:|---:|---:|",
    ]
    for stage in stages:
        seconds = profile[stage]
        rate = f"{rows / seconds:,.0f}" if seconds > 0 else "n/a"
        lines.append(f"| {stage} | {seconds:.2f} | {seconds / total:.1%} | {rate} |")
    return "\n".join(lines)


HISTOGRAM_TARGET = 0.10


def histogram_table(cases: list[Case]) -> list[str]:
    """The histogram pass's share of the score step (`--histograms both`)."""
    both = [c for c in cases if c.walls_off]
    if not both:
        return []
    lines = [
        "",
        "Full-data drift: the same score step with the champion stored with its reference "
        "profile (histograms of its features and scores counted in the scoring pass) and "
        "without (same model), alternated run by run on the same warm cluster; medians:",
        "",
        "| rows | workers | device | shard rows | with histograms s | without s | overhead |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for c in both:
        lines.append(
            f"| {c.rows:,} | {c.workers} | {c.device} | {c.shard_rows:,} | {c.wall:.2f} | "
            f"{statistics.median(c.walls_off):.2f} | {c.histogram_overhead:+.1%} |"
        )
    at = max(c.rows for c in both)
    for c in (c for c in both if c.rows == at):
        ok = c.histogram_overhead < HISTOGRAM_TARGET
        lines.append(
            f"- histogram overhead at {at:,} rows, {c.workers} {c.device} worker(s): "
            f"{c.histogram_overhead:+.1%} (target < {HISTOGRAM_TARGET:.0%}): "
            f"{'PASS' if ok else 'FAIL'}"
            + ("" if at == TARGET_ROWS else f" (the target is defined at {TARGET_ROWS:,} rows)")
        )
    return lines


def verdicts(cases: list[Case]) -> list[str]:
    cpu = [c for c in cases if c.device == "cpu"]
    if not cpu:
        return ["targets: no CPU runs"]
    if not any(c.kernel for c in cpu):
        return ["- overhead and scaling: K not measured (--kernel-repeats 0)"]
    at = TARGET_ROWS if any(c.rows == TARGET_ROWS for c in cpu) else max(c.rows for c in cpu)
    note = "" if at == TARGET_ROWS else f" (targets are defined at {TARGET_ROWS:,} rows)"
    out = []
    for shard_rows in sorted({c.shard_rows for c in cpu}):
        group = [c for c in cpu if c.rows == at and c.shard_rows == shard_rows]
        for c in group:
            ok = c.overhead < OVERHEAD_TARGET
            out.append(
                f"- overhead at {at:,} rows, {c.workers} worker(s), shards of {shard_rows:,}: "
                f"{c.overhead:.1%} (target < {OVERHEAD_TARGET:.0%}): "
                f"{'PASS' if ok else 'FAIL'}{note}; {c.overhead_vs_split:.1%} against K/workers"
            )
        one = next((c for c in group if c.workers == 1), None)
        two = next((c for c in group if c.workers == 2), None)
        if one and two:
            scaling = two.rows_per_second / one.rows_per_second
            ok = scaling >= SCALING_TARGET
            out.append(
                f"- scaling 1 -> 2 workers at {at:,} rows, shards of {shard_rows:,}: "
                f"{scaling:.2f}x (target >= {SCALING_TARGET}x): {'PASS' if ok else 'FAIL'}{note}"
            )
    return out


def report(args: argparse.Namespace, cases: list[Case], profile: dict | None) -> str:
    import numba
    import pyarrow
    import xgboost

    from kernels import gpu_available

    gpu = "yes" if gpu_available() else "no"
    lines = [
        f"Scoring benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC): {os.cpu_count()} cores, "
        f"GPU: {gpu}; {args.trees} trees of depth {args.depth}; row groups of "
        f"{args.row_group_rows:,} rows; batches of {args.batch_rows:,} rows; median of "
        f"{args.repeats} run(s) per case; numba {numba.__version__}, pyarrow "
        f"{pyarrow.__version__}, xgboost {xgboost.__version__}; {_load()} at the end.",
        "",
        "score-step s = wall time of the whole `score` flow (read -> encode -> predict -> "
        "commit, with Prefect and Dask), warm workers. K = `feature_matrix` + "
        "`kernels.predict(..., output='probability')` on the same rows and batches, in one "
        "process on one thread; K_w = the same kernels alone on as many single-threaded "
        "processes as workers, started together (the slowest one's time; K_1 = K). overhead % "
        "= (score-step s - K_w) / score-step s; overhead vs K/workers counts the machine's "
        "slowdown of parallel kernels as overhead too. scaling = rows/s / rows/s of 1 worker "
        "(same rows, shard size).",
        "",
        table(cases),
        "",
        "Where the time goes (last run of each case, from the Prefect API's flow and task runs "
        "and the ledger): flow start/end = score-step s minus the flow run's own run time "
        "(creating, starting and finishing the flow run); before shards = flow start to the "
        "first `score_shard` start (cluster inspection, dashboard link, models, shard plan, "
        "progress artifact); shard phase = first shard start to last shard end; commit = "
        "`commit_predictions`; after = the rest of the flow run (staging cleanup, ledger row, "
        "waiting on results); Σ in-task = worker seconds inside `score_shard` per the ledger "
        "(read + kernels + predictions table); Σ task-run = shard seconds as Prefect sees them; "
        "K = single-thread kernel seconds of all rows.",
        "",
        breakdown_table(cases),
        "",
        "Targets:",
        *verdicts(cases),
        *histogram_table(cases),
    ]
    if profile:
        lines += ["", profile_table(profile)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print markdown tables (progress goes to stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=_csv_ints, help="row counts (default 1000000,10000000)")
    parser.add_argument("--workers", type=_csv_ints, help="CPU worker counts (default 1,2)")
    parser.add_argument(
        "--shard-rows", type=_csv_ints, help="shard sizes to compare (default 1000000)"
    )
    parser.add_argument("--row-group-rows", type=int, default=128 * 1024)
    parser.add_argument("--batch-rows", type=int, default=1 << 20, help="score_batch_rows")
    parser.add_argument("--trees", type=int, help="trees in the model (default 500)")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--repeats", type=int, help="timed flow runs per case (default 3)")
    parser.add_argument("--kernel-repeats", type=int, default=3, help="passes for K (0: skip)")
    parser.add_argument(
        "--histograms",
        choices=["on", "off", "both"],
        default="on",
        help="score with the champion's reference profile (on), without (off), or alternate",
    )
    parser.add_argument("--quick", action="store_true", help="200k rows, 100 trees, 1 run")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU even if present")
    parser.add_argument("--no-cpu", action="store_true", help="GPU cluster only")
    parser.add_argument("--no-profile", action="store_true", help="skip the stage profile")
    parser.add_argument("--home", help="TIDEWATER_HOME to use (kept); default a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp home")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = args.rows or [200_000]
        args.trees = args.trees or 100
        args.repeats = args.repeats or 1
        args.kernel_repeats = 1
        args.shard_rows = args.shard_rows or [65_536]
        args.row_group_rows = min(args.row_group_rows, 32_768)
    args.rows = args.rows or [1_000_000, 10_000_000]
    args.workers = args.workers or [1, 2]
    args.shard_rows = args.shard_rows or [1_000_000]
    args.trees = args.trees or 500
    args.repeats = max(1, args.repeats or 3)
    args.kernel_repeats = max(0, args.kernel_repeats)
    _quiet_numba()
    _log(f"{_load()}")
    cases, profile = bench(args)
    print(report(args, cases, profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
