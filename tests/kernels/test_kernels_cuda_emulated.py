"""The CUDA kernels and their launchers, run on the CPU emulation of CUDA (`cuda_emulator`).

Every kernel variant the forest launcher can choose, the encode and the histogram kernels are
launched through the production launchers with NumPy standing in for CuPy, and checked
against the CPU twins: bit for bit where the summation order is the same. This verifies the
kernels' logic (indexing, tails, shared-memory staging, barriers, warp reduction, atomics)
where no GPU is present; `-m gpu` runs the same comparisons on a device.
"""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from cuda_emulator import compiler, emulated_target
from kernels_testlib import bits, complete_tree_model_json, random_model_json, random_rows

from kernels import compile_forest, predict
from kernels.encode import _encode_gpu, build_lookup, encode
from kernels.forest_gpu import plan_launch, predict_margin_gpu
from kernels.histogram import _flatten_edges, _histogram_gpu, histogram

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the emulator")

SM_COUNT = 2  # 4,096 resident threads: every kernel variant is reached with a few rows
TARGET = emulated_target(SM_COUNT)


def _emulated_margin(forest, X: np.ndarray) -> np.ndarray:
    out = np.full(X.shape[0], np.nan, np.float32)  # poisoned: every element must be written
    return predict_margin_gpu(forest, X, out=out, target=TARGET)


def _fixed_depth_model(depth: int, trees: int) -> xgb.Booster:
    """A trained model whose trees all reach `depth` (the unrolled FIXED_DEPTH variant)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(4000, 12)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=4000) > 0).astype(np.float32)
    params = {"max_depth": depth, "objective": "binary:logistic", "min_child_weight": 0}
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=trees)


@pytest.mark.parametrize(
    ("n_rows", "kernel"),
    [
        (3_000, "forest_rows<1, true, 0>"),
        # the wider launches emulate for over half a minute each on 2 cores
        pytest.param(9_000, "forest_rows<2, true, 0>", marks=pytest.mark.slow),
        pytest.param(17_000, "forest_rows<4, true, 0>", marks=pytest.mark.slow),
    ],
)
def test_row_kernels_are_bit_exact_with_the_cpu_twin(n_rows: int, kernel: str) -> None:
    # 300 trees of depth <= 8 span several shared-memory chunks.
    model, pools = random_model_json(11, 300, 8, 20, "binary:logistic")
    forest = compile_forest(model)
    assert plan_launch(forest, n_rows, SM_COUNT).kernel == kernel
    X = random_rows(12, n_rows, pools, missing=0.2, with_inf=True)
    expected = predict(forest, X, device="cpu")
    np.testing.assert_array_equal(bits(_emulated_margin(forest, X)), bits(expected))


def test_fixed_depth_kernel_is_bit_exact_with_the_cpu_twin() -> None:
    forest = compile_forest(_fixed_depth_model(depth=4, trees=40))
    X = random_rows(3, 20_000, np.zeros((12, 1), np.float32), missing=0.1)
    assert plan_launch(forest, len(X), SM_COUNT).kernel == "forest_rows<4, true, 4>"
    np.testing.assert_array_equal(
        bits(_emulated_margin(forest, X)), bits(predict(forest, X, device="cpu"))
    )


def test_global_memory_kernel_is_bit_exact_with_the_cpu_twin() -> None:
    forest = compile_forest(complete_tree_model_json(depth=12, n_features=5))
    X = random_rows(4, 5_000, np.round(np.linspace(-2, 2, 25), 1).reshape(5, 5), missing=0.3)
    assert plan_launch(forest, len(X), SM_COUNT).kernel == "forest_rows<1, false, 0>"
    np.testing.assert_array_equal(
        bits(_emulated_margin(forest, X)), bits(predict(forest, X, device="cpu"))
    )


@pytest.mark.parametrize("n_rows", [1, 37, 500])
def test_tree_parallel_kernel_matches_the_cpu_twin(n_rows: int) -> None:
    model, pools = random_model_json(21, 150, 6, 30, "reg:squarederror")
    forest = compile_forest(model)
    assert plan_launch(forest, n_rows, SM_COUNT).kernel == "forest_tree_parallel"
    X = random_rows(22, n_rows, pools, missing=0.25)
    expected = predict(forest, X, device="cpu")
    ours = _emulated_margin(forest, X)
    # Lanes sum different trees, then a warp reduction: another summation order.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def _encode_inputs(n_rows: int, seed: int):
    rng = np.random.default_rng(seed)
    numeric = [rng.normal(size=n_rows).astype(np.float32), rng.integers(0, 90, n_rows)]
    numeric[0][rng.random(n_rows) < 0.2] = np.nan
    vocabulary = ["a", "b", "c", "d"]
    categorical = []
    for dictionary in (["b", "z", "a"], ["d", "c", "b", "a", "q"]):
        codes = rng.integers(-1, len(dictionary), n_rows).astype(np.int32)
        categorical.append((codes, build_lookup(dictionary, vocabulary)))
    return numeric, categorical


@pytest.mark.parametrize("n_rows", [1, 1_000, 70_000])
def test_encode_kernel_matches_the_cpu_twin(n_rows: int) -> None:
    numeric, categorical = _encode_inputs(n_rows, seed=n_rows)
    ours = _encode_gpu(numeric, categorical, n_rows, target=TARGET)
    np.testing.assert_array_equal(ours, encode(numeric, categorical, device="cpu"))


def test_encode_kernel_reports_a_code_outside_the_dictionary() -> None:
    numeric, categorical = _encode_inputs(500, seed=1)
    categorical[1][0][7] = 99
    with pytest.raises(ValueError):
        _encode_gpu(numeric, categorical, 500, target=TARGET)


@pytest.mark.parametrize(
    ("n_features", "n_edges"),
    [(6, 9), (200, 70)],  # counts fit shared memory (block-private tables), then do not
)
def test_histogram_kernel_matches_the_cpu_twin(n_features: int, n_edges: int) -> None:
    rng = np.random.default_rng(n_features)
    X = rng.normal(size=(3_000, n_features)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    sizes = [n_edges, *rng.integers(0, n_edges + 1, n_features - 1)]
    edges = [np.sort(rng.normal(size=size)).astype(np.float32) for size in sizes]
    X[::7, 0] = edges[0][0] if len(edges[0]) else 0.0  # values on an edge
    cuts, offsets = _flatten_edges(edges)
    n_slots = int(np.diff(offsets).max(initial=0)) + 2
    ours = _histogram_gpu(X, cuts, offsets, n_slots, target=TARGET)
    np.testing.assert_array_equal(ours, histogram(X, edges, device="cpu"))
    assert ours.sum() == X.size
