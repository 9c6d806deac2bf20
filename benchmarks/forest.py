"""Forest inference benchmark: our CPU twin / CUDA kernel against XGBoost's predictors.

    python -m benchmarks.forest                       # the whole suite at 1M rows (long)
    python -m benchmarks.forest --quick               # a short smoke run
    python -m benchmarks.forest --models adult --depths 8 --rows 100000

The suite is models as users train them: XGBoost defaults (binary:logistic, hist,
min_child_weight=1, eta 0.3; only n_estimators and max_depth set) on
- adult: the shipped UCI Adult data (categories as codes, missing as NaN); scored rows are
  bootstrapped real rows (`datasets.adult.synthesize`);
- higgs: a HIGGS-like synthetic, 28 dense features (21 "low-level" lognormal / normal /
  angle / exponential columns, 7 derived ones), no missing values;
- wide: a wide sparse synthetic, 256 features of which ~90% of values are missing;
and one best-case row, labelled as such: complete trees (min_child_weight=0) on higgs.
Each row reports the trees' shape: mean nodes per tree, mean leaf depth, and the mean number
of nodes a scored row visits per tree (what XGBoost's early-exit walk pays).

Models are trained once and cached under the temp dir (a model of N trees is the first N trees
of the largest one trained at that depth). Each case is timed `--repeats` times alternating
ours and XGBoost (`inplace_predict`, margins) on the same threads and float32 input; the
reported ratio is the median of the pairwise ratios. Our CPU time includes all input
preparation (the key transform is fused into the kernel). On a GPU, kernel times exclude
host<->device copies, which are reported separately.
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
import pandas as pd
import xgboost as xgb

from kernels import compile_forest, gpu_available
from kernels.forest_cpu import predict_margin_cpu
from kernels.forest_model import Forest

CACHE = Path(tempfile.gettempdir()) / "tidewater-forest-bench"
SHAPE_ROWS = 5_000
MODELS = ("adult", "higgs", "wide", "best")
LABELS = {
    "adult": "Adult (shipped data)",
    "higgs": "HIGGS-like, 28 dense",
    "wide": "wide sparse, 256 f., 90% missing",
    "best": "best case: complete trees (HIGGS-like, min_child_weight=0)",
}


@dataclass
class Result:
    """Timings of one (model, trees, depth, rows) case."""

    model: str
    trees: int
    depth: int
    rows: int
    nodes_per_tree: float
    leaf_depth: float
    visits: float
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


# -- data ----------------------------------------------------------------------------------


def _adult_matrix(df: pd.DataFrame, categories: dict[str, list[str]]) -> np.ndarray:
    from datasets.adult import COLUMNS

    cols = []
    for name in COLUMNS:
        if name == "income":
            continue
        if name in categories:
            codes = pd.Categorical(df[name], categories=categories[name]).codes
            col = codes.astype(np.float32)
            col[codes < 0] = np.nan
        else:
            col = pd.to_numeric(df[name]).to_numpy(dtype=np.float32, na_value=np.nan)
        cols.append(col)
    return np.ascontiguousarray(np.stack(cols, axis=1))


def adult_data(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training matrix, labels, n_rows scoring rows) from the shipped Adult data."""
    from datasets.adult import load_adult, synthesize

    train = load_adult()
    categories = {
        c: sorted(train[c].dropna().unique())
        for c in train.columns
        if c != "income" and train[c].dtype == object
    }
    y = (train["income"] == ">50K").to_numpy(np.float32)
    scored = _adult_matrix(synthesize(n_rows, seed=seed), categories)
    return _adult_matrix(train, categories), y, scored


def higgs_rows(n: int, seed: int) -> np.ndarray:
    """float32 (n, 28): 21 low-level columns and 7 derived ones, no missing values."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 28), np.float32)
    for j in range(21):
        kind = j % 4
        if kind == 0:
            X[:, j] = rng.lognormal(0, 0.6, n)
        elif kind == 1:
            X[:, j] = rng.normal(0, 1.1, n)
        elif kind == 2:
            X[:, j] = rng.uniform(-np.pi, np.pi, n)
        else:
            X[:, j] = rng.exponential(1.0, n)
    for j in range(21, 28):
        a, b = X[:, (j * 3) % 21], X[:, (j * 5 + 1) % 21]
        X[:, j] = np.sqrt(np.abs(a * b)) + 0.3 * rng.normal(size=n)
    return X


def higgs_data(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training matrix, labels, n_rows scoring rows) of the HIGGS-like synthetic."""
    train_rows = 100_000
    X = higgs_rows(train_rows, 1)
    rng = np.random.default_rng(2)
    s = (
        X[:, 21] * 0.8
        - X[:, 24] * 0.6
        + np.sin(X[:, 2]) * X[:, 1]
        + 0.4 * X[:, 0] * X[:, 8]
        - 0.5 * (X[:, 27] > 1.2)
    )
    y = (s + rng.logistic(size=train_rows) * 1.2 > np.median(s)).astype(np.float32)
    return X, y, higgs_rows(n_rows, seed)


def wide_rows(n: int, seed: int, n_features: int = 256, present: float = 0.12) -> np.ndarray:
    """float32 (n, 256), mostly missing (present with probability falling from 24% to 2.4%)."""
    rng = np.random.default_rng(seed)
    X = np.full((n, n_features), np.nan, np.float32)
    mask = rng.random((n, n_features)) < present * np.linspace(2, 0.2, n_features)[None, :]
    values = rng.exponential(1.0, (n, n_features)).astype(np.float32)
    X[mask] = values[mask]
    return X


def wide_data(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training matrix, labels, n_rows scoring rows) of the wide sparse synthetic."""
    train_rows = 60_000
    X = wide_rows(train_rows, 3)
    rng = np.random.default_rng(4)
    Z = np.nan_to_num(X)
    w = rng.normal(size=X.shape[1]) * (rng.random(X.shape[1]) < 0.3)
    s = Z @ w + 1.5 * np.isnan(X[:, 0]) - Z[:, 3] * Z[:, 7]
    y = (s + rng.logistic(size=train_rows) > np.median(s)).astype(np.float32)
    return X, y, wide_rows(n_rows, seed)


DATA = {"adult": adult_data, "higgs": higgs_data, "wide": wide_data, "best": higgs_data}


def trained_model(
    name: str, data: tuple, trees: int, depth: int, threads: int, device: str = "cpu"
) -> xgb.Booster:
    """XGBoost defaults (min_child_weight=0 for "best"), cached on disk. `device="cuda"`
    trains on the GPU (minutes less on a lent device; the trees differ, not their kind)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    source = "higgs" if name == "best" else name
    mcw = 0 if name == "best" else None
    path = CACHE / f"{source}-d{depth}-t{trees}-m{mcw}-{device}-v{xgb.__version__}.json"
    if not path.exists():
        X, y, _ = data
        params: dict[str, Any] = {
            "objective": "binary:logistic",
            "max_depth": depth,
            "nthread": threads,
            "device": device,
        }
        if mcw is not None:
            params["min_child_weight"] = mcw
        started = time.perf_counter()
        booster = xgb.train(params, xgb.DMatrix(X, y), trees)
        print(
            f"  trained {path.name} in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
        booster.save_model(path)
    return xgb.Booster(model_file=path)


def tree_shape(forest: Forest, X: np.ndarray) -> tuple[float, float, float]:
    """(mean nodes per tree, mean leaf depth, mean nodes visited per tree by the rows X)."""
    sizes = np.diff(forest.tree_offsets)
    leaf_depths, visits = [], 0.0
    rows = np.arange(X.shape[0])
    for t in range(forest.n_trees):
        lo, hi = forest.tree_offsets[t], forest.tree_offsets[t + 1]
        feat, thr = forest.feature[lo:hi], forest.threshold[lo:hi]
        left, dleft = forest.left_child[lo:hi], forest.default_left[lo:hi]
        depth = np.zeros(hi - lo, np.int64)
        for i in np.flatnonzero(feat >= 0):  # breadth-first: parents come first
            depth[left[i]] = depth[left[i] + 1] = depth[i] + 1
        leaf_depths.append(depth[feat < 0].mean())
        idx = np.zeros(X.shape[0], np.int64)
        for _ in range(int(forest.tree_depths[t])):
            f = feat[idx]
            x = X[rows, np.maximum(f, 0)]
            right = np.where(np.isnan(x), dleft[idx] == 0, ~(x < thr[idx]))
            idx = np.where(f < 0, idx, left[idx] + right)
        visits += depth[idx].mean()
    n = max(forest.n_trees, 1)
    return float(sizes.mean()), float(np.mean(leaf_depths)), visits / n


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
        same = bool((out.view(np.uint32) == ref.view(np.uint32)).all())
        res.exact = same if res.exact is None else res.exact and same


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
        "model",
        "trees",
        "depth",
        "nodes/tree",
        "mean leaf depth",
        "visits/row/tree",
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
            LABELS[r.model],
            str(r.trees),
            str(r.depth),
            f"{r.nodes_per_tree:.0f}",
            f"{r.leaf_depth:.2f}",
            f"{r.visits:.2f}",
            f"{r.rows:,}",
        ]
        if r.cpu_ours:
            cells += [
                f"{r.rows / statistics.median(r.cpu_ours):,.0f}",
                f"{r.rows / statistics.median(r.cpu_xgb):,.0f}",
                f"**{_ratio(r.cpu_xgb, r.cpu_ours):.2f}x**",
                "yes" if r.exact else "NO",
            ]
        else:
            cells += ["not run"] * 4
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


def suite(models: list[str], depths: list[int], trees: list[int]) -> list[tuple[str, int, int]]:
    """(model, trees, depth) cases: every model at every depth with the smallest tree count;
    the larger tree counts at depth 8 for adult and higgs (training the wide model takes
    minutes per 100 trees on 2 cores); the best case at depth 8 only."""
    cases = []
    for name in models:
        if name == "best":
            cases.append((name, trees[0], 8))
            continue
        cases += [(name, trees[0], d) for d in depths]
        cases += [(name, t, 8) for t in trees[1:] if 8 in depths and name != "wide"]
    return cases


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="default: all")
    parser.add_argument("--rows", type=int, nargs="+", help="row counts (default 1M)")
    parser.add_argument(
        "--trees", type=int, nargs="+", help="tree counts (default 500 1000; 1000 at depth 8)"
    )
    parser.add_argument("--depths", type=int, nargs="+", help="depths (default 6 8 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU even if present")
    parser.add_argument(
        "--no-cpu",
        action="store_true",
        help="GPU columns only, models trained on the GPU (for a lent device's short calls)",
    )
    args = parser.parse_args(argv)

    if args.quick:
        rows, trees, depths, repeats = [100_000], [500], [8], min(args.repeats, 3)
    else:
        rows, trees, depths, repeats = [1_000_000], [500, 1000], [6, 8, 10], args.repeats
    rows = args.rows or rows
    trees = sorted(args.trees or trees)
    depths = args.depths or depths
    models = args.models or list(MODELS)
    gpu = gpu_available() and not args.no_gpu
    if args.no_cpu and not gpu:
        parser.error("--no-cpu leaves nothing to run without a usable GPU")
    train_device = "cuda" if args.no_cpu else "cpu"

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(
        f"threads={args.threads} (numba {numba.get_num_threads()}), xgboost {xgb.__version__}, "
        f"gpu={'yes' if gpu else 'no'}, repeats={repeats}",
        file=sys.stderr,
    )
    cases = suite(models, depths, trees)
    results = []
    data_cache: dict[tuple[str, int], tuple] = {}
    for name, n_trees, depth in cases:
        largest = max(t for m, t, d in cases if m == name and d == depth)
        for n_rows in rows:
            key = ("higgs" if name == "best" else name, n_rows)
            if key not in data_cache:
                data_cache.clear()
                data_cache[key] = DATA[name](n_rows, 1234)
            data = data_cache[key]
            full = trained_model(name, data, largest, depth, args.threads, train_device)
            booster = full[:n_trees] if n_trees < largest else full
            booster.set_param({"nthread": args.threads})
            forest = compile_forest(booster)
            X = data[2]
            shape = tree_shape(forest, X[:SHAPE_ROWS])
            res = Result(name, n_trees, depth, n_rows, *shape)
            if not args.no_cpu:
                bench_cpu(res, forest, booster, X, repeats)
            if gpu:
                bench_gpu(res, forest, booster, X, repeats)
            results.append(res)
            # Each row as it completes: a long run that is cut short still leaves its figures.
            print(table([res], gpu).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(results, gpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
