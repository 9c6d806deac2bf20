"""Forest predictions against XGBoost: bit-exact on the CPU twin, 1e-5 of max |margin| on GPU."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernels_testlib import (
    OBJECTIVES,
    bits,
    load_booster,
    random_model_json,
    random_rows,
    xgb_margin,
)

from kernels import compile_forest, predict
from kernels.forest_cpu import key_block_rows, predict_margin_cpu
from kernels.forest_model import NAN_KEY, float_keys

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

models = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "n_trees": st.one_of(st.integers(1, 30), st.integers(1, 1000)),
        "max_depth": st.integers(1, 12),
        "n_features": st.one_of(st.integers(1, 12), st.integers(1, 200)),
        "objective": st.sampled_from(OBJECTIVES),
    }
)
inputs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "n_rows": st.one_of(st.just(0), st.integers(1, 40), st.integers(1, 700)),
        "missing": st.floats(0.0, 0.5),
        "with_inf": st.booleans(),
    }
)


def _case(model: dict, data: dict):
    text, pools = random_model_json(**model, max_total_nodes=30_000)
    booster = load_booster(text)
    forest = compile_forest(text)
    X = random_rows(data["seed"], data["n_rows"], pools, data["missing"], data["with_inf"])
    return booster, forest, X


def _assert_matches(ours: np.ndarray, ref: np.ndarray, device: str) -> None:
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    if device == "cpu":
        np.testing.assert_array_equal(bits(ours), bits(ref))
    elif ref.size:
        tol = 1e-5 * max(float(np.abs(ref).max()), 1.0)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=tol)


@SETTINGS
@given(model=models, data=inputs)
def test_random_models_match_xgboost(device: str, model: dict, data: dict) -> None:
    booster, forest, X = _case(model, data)
    ref = xgb_margin(booster, X)
    _assert_matches(predict(forest, X, device=device), ref, device)


@settings(max_examples=8, deadline=None)
@given(model=models, data=inputs)
def test_every_cpu_method_is_exact(model: dict, data: dict) -> None:
    booster, forest, X = _case(model, data)
    ref = xgb_margin(booster, X)
    for method in ("keys", "lanes", "binned", "scalar"):
        np.testing.assert_array_equal(bits(predict_margin_cpu(forest, X, method=method)), bits(ref))


@pytest.fixture(scope="module", params=OBJECTIVES)
def trained(request: pytest.FixtureRequest):
    """A small XGBoost model trained on data with missing values, and held-out rows."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(600, 9)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    signal = np.nan_to_num(X[:, 0]) - 0.5 * np.nan_to_num(X[:, 3]) + 0.1 * rng.normal(size=600)
    y = (signal > 0).astype(np.float32) if request.param != "reg:squarederror" else signal
    params = {"objective": request.param, "max_depth": 5, "nthread": 2, "tree_method": "hist"}
    booster = xgb.train(params, xgb.DMatrix(X, y), 25)
    X_test = rng.normal(size=(333, 9)).astype(np.float32)
    X_test[rng.random(X_test.shape) < 0.2] = np.nan
    X_test[:50] = X[:50]  # training rows: values equal to split thresholds occur
    return booster, X_test


def test_trained_model_all_sources_bit_exact(device: str, trained, tmp_path) -> None:
    booster, X = trained
    ref = booster.predict(xgb.DMatrix(X, missing=np.nan), output_margin=True)
    path = tmp_path / "model.json"
    booster.save_model(path)
    raw = bytes(booster.save_raw("json"))
    for source in (booster, str(path), path, raw, raw.decode()):
        _assert_matches(predict(compile_forest(source), X, device=device), ref, device)


def test_probability_output(device: str, trained) -> None:
    booster, X = trained
    forest = compile_forest(booster)
    prob = predict(forest, X, device=device, output="probability")
    ref = booster.predict(xgb.DMatrix(X, missing=np.nan))
    assert prob.dtype == np.float32
    np.testing.assert_allclose(prob, ref, rtol=2e-6, atol=1e-7)


def test_empty_input(device: str, trained) -> None:
    booster, _ = trained
    forest = compile_forest(booster)
    for output in ("margin", "probability"):
        out = predict(forest, np.empty((0, forest.n_features), np.float32), device, output)
        assert out.shape == (0,) and out.dtype == np.float32


def test_wrong_feature_count_is_a_clear_error(trained) -> None:
    booster, X = trained
    forest = compile_forest(booster)
    with pytest.raises(ValueError, match="features"):
        predict(forest, X[:, :-1])
    with pytest.raises(ValueError, match="2-D"):
        predict(forest, X[0])
    with pytest.raises(ValueError, match="output"):
        predict(forest, X, output="logits")


def test_non_contiguous_and_float64_input(trained) -> None:
    booster, X = trained
    forest = compile_forest(booster)
    ref = predict(forest, X)
    np.testing.assert_array_equal(bits(predict(forest, np.asfortranarray(X))), bits(ref))
    np.testing.assert_array_equal(bits(predict(forest, X.astype(np.float64))), bits(ref))


@pytest.mark.parametrize("n_rows", [1, 7, 8, 9, 255, 256, 257, 1000, 1023, 1024, 1025, 2100])
@pytest.mark.parametrize("method", ["keys", "lanes", "binned", "scalar"])
def test_cpu_writes_every_output(n_rows: int, method: str) -> None:
    text, pools = random_model_json(3, 20, 6, 5, "binary:logistic")
    forest = compile_forest(text)
    X = random_rows(4, n_rows, pools, 0.2)
    sentinel = np.uint32(0x7FBADBAD)  # a NaN payload no computation produces
    out = np.full(n_rows + 3, sentinel, np.uint32).view(np.float32)
    predict_margin_cpu(forest, X, out=out[:n_rows], method=method)
    assert not (bits(out[:n_rows]) == sentinel).any()
    assert (bits(out[n_rows:]) == sentinel).all()  # nothing written past the end


@pytest.mark.gpu
@pytest.mark.parametrize("n_rows", [1, 33, 1000, 300_000])
def test_gpu_writes_every_output(device: str, n_rows: int) -> None:
    if device != "gpu":
        pytest.skip("GPU-only check")
    import cupy

    from kernels.forest_gpu import predict_margin_gpu

    for trees in (20, 200):
        text, pools = random_model_json(3, trees, 6, 5, "binary:logistic")
        forest = compile_forest(text)
        X = random_rows(4, n_rows, pools, 0.2)
        out = cupy.full(n_rows + 3, 0x7FBADBAD, cupy.uint32).view(cupy.float32)
        predict_margin_gpu(forest, X, out=out[:n_rows])
        raw = out.view(cupy.uint32).get()
        assert not (raw[:n_rows] == 0x7FBADBAD).any()
        assert (raw[n_rows:] == 0x7FBADBAD).all()


def test_zero_tree_model_predicts_base_margin() -> None:
    text, pools = random_model_json(1, 1, 3, 4, "binary:logistic")
    import json

    doc = json.loads(text)
    model = doc["learner"]["gradient_booster"]["model"]
    model["trees"], model["tree_info"], model["iteration_indptr"] = [], [], [0]
    model["gbtree_model_param"]["num_trees"] = "0"
    forest = compile_forest(doc)
    X = random_rows(2, 5, pools, 0.1)
    np.testing.assert_array_equal(predict(forest, X), np.full(5, forest.base_margin, np.float32))


_SPECIAL = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, -1.0],
    np.float32,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=40))
def test_float_keys_preserve_order(values: list[float]) -> None:
    x = np.concatenate([np.asarray(values, np.float32), _SPECIAL])
    key = float_keys(x).astype(np.int64)
    nan = np.isnan(x)
    assert (key[nan] == NAN_KEY).all() and (key[~nan] < NAN_KEY).all()
    a, b = x[~nan][:, None], x[~nan][None, :]
    ka, kb = key[~nan][:, None], key[~nan][None, :]
    np.testing.assert_array_equal(a < b, ka < kb)
    np.testing.assert_array_equal(a == b, ka == kb)


@pytest.mark.parametrize("n_features", [1, 14, 28, 200])
def test_key_walk_blocks_with_many_features(n_features: int) -> None:
    # Rows per block shrink as the model reads more columns: cross several block boundaries.
    text, pools = random_model_json(n_features, 60, 9, n_features, "reg:squarederror")
    booster, forest = load_booster(text), compile_forest(text)
    X = random_rows(5, 3 * key_block_rows(n_features) + 5, pools, 0.3, with_inf=True)
    ours = predict_margin_cpu(forest, X, method="keys")
    np.testing.assert_array_equal(bits(ours), bits(xgb_margin(booster, X)))
