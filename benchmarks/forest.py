"""Forest inference benchmark: our CPU twin / CUDA kernel against XGBoost's predictors.

    python -m benchmarks.forest            # every case (long: minutes to tens of minutes)
    python -m benchmarks.forest --quick    # a short smoke run
    python -m benchmarks.forest --rows 1000000 --trees 500 --depths 8

Models are trained once on synthetic data (28 features, hist) and cached under the temp dir; a
model of N trees is the first N trees of the largest one trained at that depth. Inputs are
float32 with 10% missing values. Each case is timed `--repeats` times alternating ours and
XGBoost on the same threads and data; the reported ratio is the median of the pairwise ratios.
Our CPU time includes input quantisation (it is fused into the kernel). On a GPU, kernel times
exclude host<->device copies, which are reported separately.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import xgboost as xgb

from kernels import compile_forest, gpu_available
from kernels.forest_cpu import predict_margin_cpu
from kernels.forest_model import Forest

N_FEATURES = 28
MISSING = 0.10
TRAIN_ROWS = 20_000
CACHE = Path(tempfile.gettempdir()) / "tidewater-forest-bench"


@dataclass
class Result:
    """Timings of one (trees, depth, rows) case."""

    trees: int
    depth: int
    rows: int
    nodes_per_tree: float
    cpu_ours: list[float] = field(default_factory=list)
    cpu_xgb: list[float] = field(default_factory=list)
    exact: bool | None = None
    gpu_ours: list[float] = field(default_factory=list)
    gpu_xgb: list[float] = field(default_factory=list)
    h2d: float | None = None
    d2h: float | None = None
    gpu_max_rel_err: float | None = None
    gpu_bandwidth_frac: float | None = None
    gpu_visit_frac: float | None = None


def make_rows(n: int, seed: int) -> np.ndarray:
    """float32 (n, 28) standard normal rows with 10% NaN."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES), dtype=np.float32)
    X[rng.random((n, N_FEATURES), dtype=np.float32) < MISSING] = np.nan
    return X


def trained_model(trees: int, depth: int, threads: int) -> xgb.Booster:
    """A binary:logistic booster of `trees` trees of max depth `depth` (cached on disk)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"model-d{depth}-t{trees}-v{xgb.__version__}.json"
    if not path.exists():
        X = make_rows(TRAIN_ROWS, seed=depth)
        rng = np.random.default_rng(depth + 100)
        Z = np.nan_to_num(X)
        w = rng.normal(size=N_FEATURES)
        logit = Z @ w + np.sin(3 * Z[:, 0]) * Z[:, 1] + (Z[:, 2] > 0.5) * 2.0
        y = (logit + rng.logistic(size=TRAIN_ROWS) > 0).astype(np.float32)
        params = {
            "objective": "binary:logistic",
            "max_depth": depth,
            "eta": 0.05,
            "tree_method": "hist",
            "nthread": threads,
            "min_child_weight": 0.0,
        }
        started = time.perf_counter()
        booster = xgb.train(params, xgb.DMatrix(X, y), trees)
        print(
            f"  trained {trees} trees depth {depth} in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
        booster.save_model(path)
    return xgb.Booster(model_file=path)


def _elapsed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_cpu(res: Result, forest: Forest, booster: xgb.Booster, X: np.ndarray, repeats: int):
    out = np.empty(X.shape[0], np.float32)
    predict_margin_cpu(forest, X[:1024], out=out[:1024])  # compile / warm caches
    booster.inplace_predict(X[:1024], predict_type="margin")
    for _ in range(repeats):
        res.cpu_ours.append(_elapsed(lambda: predict_margin_cpu(forest, X, out=out)))
        ref = None

        def run_xgb() -> None:
            nonlocal ref
            ref = booster.inplace_predict(X, predict_type="margin", missing=np.nan)

        res.cpu_xgb.append(_elapsed(run_xgb))
        if res.exact is None:
            res.exact = bool((out.view(np.uint32) == ref.view(np.uint32)).all())


def device_peaks() -> tuple[float | None, float | None, dict[str, int]]:
    """(peak memory bandwidth B/s, derived peak node visits/s, attributes) of the current GPU.

    Node-visit bound: a step is two dependent loads (the node record, then the row's feature
    value) and an SM issues at most 32 thread-loads per clock, so visits/s <= SMs * clock * 16.
    """
    import cupy

    attrs = dict(cupy.cuda.Device().attributes)
    bandwidth = visits = None
    mem_khz, bus = attrs.get("MemoryClockRate"), attrs.get("GlobalMemoryBusWidth")
    if mem_khz and bus:
        bandwidth = 2.0 * mem_khz * 1e3 * bus / 8
    clock_khz = attrs.get("ClockRate")
    if clock_khz:
        visits = attrs["MultiProcessorCount"] * clock_khz * 1e3 * 16
    return bandwidth, visits, attrs


def bench_gpu(res: Result, forest: Forest, booster: xgb.Booster, X: np.ndarray, repeats: int):
    import cupy

    from kernels.forest_gpu import predict_margin_gpu

    def timed(fn: Callable[[], Any]) -> float:
        cupy.cuda.Device().synchronize()
        started = time.perf_counter()
        fn()
        cupy.cuda.Device().synchronize()
        return time.perf_counter() - started

    res.h2d = timed(lambda: cupy.asarray(X))
    Xd = cupy.asarray(X)
    out = cupy.empty(X.shape[0], cupy.float32)
    predict_margin_gpu(forest, Xd[:1024], out=out[:1024])
    gpu_booster = booster.copy()
    gpu_booster.set_param({"device": "cuda"})
    gpu_booster.inplace_predict(Xd[:1024], predict_type="margin")
    for _ in range(repeats):
        res.gpu_ours.append(timed(lambda: predict_margin_gpu(forest, Xd, out=out)))
        res.gpu_xgb.append(timed(lambda: gpu_booster.inplace_predict(Xd, predict_type="margin")))
    res.d2h = timed(lambda: out.get())
    ref = booster.inplace_predict(X, predict_type="margin")
    res.gpu_max_rel_err = float(np.abs(out.get() - ref).max() / max(np.abs(ref).max(), 1.0))
    bandwidth, visits, _ = device_peaks()
    t = statistics.median(res.gpu_ours)
    if bandwidth:
        res.gpu_bandwidth_frac = (X.nbytes + 4 * X.shape[0]) / t / bandwidth
    if visits:
        res.gpu_visit_frac = X.shape[0] * int(forest.tree_depths.sum()) / t / visits


def _ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def table(results: list[Result], gpu: bool) -> str:
    """The results as a markdown table."""
    head = [
        "trees",
        "depth",
        "nodes/tree",
        "rows",
        "ours CPU rows/s",
        "XGBoost CPU rows/s",
        "CPU ratio",
        "bit-exact",
    ]
    if gpu:
        head += [
            "ours GPU rows/s",
            "XGBoost GPU rows/s",
            "GPU ratio",
            "H2D s",
            "D2H s",
            "max rel err",
            "BW frac",
            "visit frac",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [
            str(r.trees),
            str(r.depth),
            f"{r.nodes_per_tree:.0f}",
            f"{r.rows:,}",
            f"{r.rows / statistics.median(r.cpu_ours):,.0f}",
            f"{r.rows / statistics.median(r.cpu_xgb):,.0f}",
            f"**{_ratio(r.cpu_xgb, r.cpu_ours):.2f}x**",
            "yes" if r.exact else "NO",
        ]
        if gpu and r.gpu_ours:
            cells += [
                f"{r.rows / statistics.median(r.gpu_ours):,.0f}",
                f"{r.rows / statistics.median(r.gpu_xgb):,.0f}",
                f"**{_ratio(r.gpu_xgb, r.gpu_ours):.2f}x**",
                f"{r.h2d:.4f}",
                f"{r.d2h:.4f}",
                f"{r.gpu_max_rel_err:.1e}",
                f"{r.gpu_bandwidth_frac:.1%}" if r.gpu_bandwidth_frac else "n/a",
                f"{r.gpu_visit_frac:.1%}" if r.gpu_visit_frac else "n/a",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--rows", type=int, nargs="+", help="row counts (default 100k 1M 4M)")
    parser.add_argument("--trees", type=int, nargs="+", help="tree counts (default 100 500 1000)")
    parser.add_argument("--depths", type=int, nargs="+", help="depths (default 6 8)")
    parser.add_argument(
        "--deep",
        type=int,
        nargs="*",
        default=None,
        help="extra deep-tree depths run with 500 trees (default 12)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (>= 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU even if present")
    args = parser.parse_args(argv)

    if args.quick:
        rows, trees, depths, deep = [100_000], [100, 500], [6, 8], [12]
        repeats = max(3, min(args.repeats, 3))
    else:
        rows = [100_000, 1_000_000, 4_000_000]
        trees, depths, deep, repeats = [100, 500, 1000], [6, 8], [12], max(5, args.repeats)
    rows = args.rows or rows
    trees = args.trees or trees
    depths = args.depths or depths
    deep = deep if args.deep is None else args.deep
    gpu = gpu_available() and not args.no_gpu

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(
        f"threads={args.threads} (numba {numba.get_num_threads()}), xgboost {xgb.__version__}, "
        f"gpu={'yes' if gpu else 'no'}, repeats={repeats}",
        file=sys.stderr,
    )
    cases = [(t, d) for d in depths for t in trees] + [(500, d) for d in deep]
    largest = {d: max(t for t, dd in cases if dd == d) for _, d in cases}
    results = []
    for n_trees, depth in cases:
        full = trained_model(largest[depth], depth, args.threads)
        booster = full[:n_trees] if n_trees < largest[depth] else full
        booster.set_param({"nthread": args.threads})
        forest = compile_forest(booster)
        for n_rows in rows:
            X = make_rows(n_rows, seed=1234)
            res = Result(n_trees, depth, n_rows, forest.n_nodes / max(forest.n_trees, 1))
            bench_cpu(res, forest, booster, X, repeats)
            if gpu:
                bench_gpu(res, forest, booster, X, repeats)
            results.append(res)
            print(
                f"  {n_trees} trees d{depth} {n_rows:,} rows: CPU ratio "
                f"{_ratio(res.cpu_xgb, res.cpu_ours):.2f}x",
                file=sys.stderr,
            )
    print(table(results, gpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
