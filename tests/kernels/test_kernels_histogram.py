"""Histogram kernel against NumPy, shard merging, and the drift statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import category_edges, histogram, quantile_edges


def reference_histogram(X: np.ndarray, edges) -> np.ndarray:
    n_slots = max(len(e) for e in edges) + 2
    counts = np.zeros((X.shape[1], n_slots), np.int64)
    for j, e in enumerate(edges):
        col = X[:, j]
        nan = np.isnan(col)
        bins = np.searchsorted(np.asarray(e, np.float32), col[~nan], side="right")
        counts[j, : len(e) + 1] = np.bincount(bins, minlength=len(e) + 1)
        counts[j, -1] = nan.sum()
    return counts


def _data(seed: int, n_rows: int, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    X[:, 0] = rng.integers(0, 4, n_rows)  # a categorical code column
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.01] = np.inf
    return X


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(0, 3000),
    n_features=st.integers(1, 8),
    n_bins=st.integers(1, 40),
)
def test_matches_numpy(device: str, seed: int, n_rows: int, n_features: int, n_bins: int) -> None:
    X = _data(seed, n_rows, n_features)
    ref_X = _data(seed + 1, 500, n_features)
    edges = [category_edges(4), *quantile_edges(ref_X[:, 1:], n_bins)]
    Xd = X
    if device == "gpu":
        import cupy

        Xd = cupy.asarray(X)
    counts = histogram(Xd, edges, device=device)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, reference_histogram(X, edges))
    assert (counts.sum(axis=1) == n_rows).all()


def test_infinite_reference_values_give_finite_ascending_edges() -> None:
    column = np.array([[-np.inf], [0.0], [1.0], [2.0], [np.inf], [np.inf], [np.nan]], np.float32)
    (edges,) = quantile_edges(column, 8)
    assert np.isfinite(edges).all() and (np.diff(edges) > 0).all()
    counts = histogram(column, [edges], device="cpu")
    assert counts.sum() == len(column) and counts[0, -1] == 1  # NaN in its own slot


def test_shards_add_up(device: str) -> None:
    X = _data(3, 10_000, 5)
    edges = quantile_edges(X, 16)
    whole = histogram(X, edges, device=device)
    parts = sum(histogram(X[a : a + 2500], edges, device=device) for a in range(0, 10_000, 2500))
    np.testing.assert_array_equal(whole, parts)


def test_quantile_edges() -> None:
    X = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    X = np.concatenate([X, np.full((1000, 1), np.nan, np.float32)], axis=1)
    edges = quantile_edges(X, 4)
    np.testing.assert_allclose(edges[0], np.quantile(np.arange(1000), [0.25, 0.5, 0.75]))
    assert edges[1].size == 0
    counts = histogram(X, edges)
    assert counts[0, :4].tolist() == [250, 250, 250, 250]
    assert counts[1].tolist() == [0, 0, 0, 0, 1000]
    with pytest.raises(ValueError):
        quantile_edges(X, 0)


def test_category_edges() -> None:
    codes = np.array([[0], [1], [2], [2], [np.nan]], np.float32)
    assert histogram(codes, [category_edges(3)])[0].tolist() == [1, 1, 2, 1]


def test_bad_edges() -> None:
    with pytest.raises(ValueError, match="ascending"):
        histogram(np.zeros((2, 1), np.float32), [np.array([1.0, 0.0])])
    with pytest.raises(ValueError, match="edge arrays"):
        histogram(np.zeros((2, 2), np.float32), [np.array([1.0])])


_special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(0, 2000),
    n_numeric=st.integers(0, 4),
    n_categories=st.lists(st.integers(1, 12), min_size=0, max_size=3),
    n_bins=st.integers(1, 30),
    cuts=st.lists(st.floats(0, 1), max_size=6),
    specials=st.lists(_special, max_size=20),
)
def test_merged_shard_histograms_equal_one_histogram_over_all_rows(
    device, seed, n_rows, n_numeric, n_categories, n_bins, cuts, specials
) -> None:
    """Any split of the rows into shards (empty ones included), NaN and ±inf anywhere,
    category codes (unknown = NaN) beside numeric features: the shards' counts add up to
    the histogram of all rows."""
    if n_numeric + len(n_categories) == 0:
        n_numeric = 1
    rng = np.random.default_rng(seed)
    numeric = rng.standard_t(3, size=(n_rows, n_numeric)).astype(np.float32)
    codes = [rng.integers(0, n, n_rows).astype(np.float32) for n in n_categories]
    X = np.column_stack([numeric, *codes]) if codes else numeric
    X = X.reshape(n_rows, n_numeric + len(n_categories)).astype(np.float32)
    if n_rows and specials:
        X.flat[rng.integers(0, X.size, len(specials))] = np.array(specials, np.float32)
    edges = quantile_edges(X[:, :n_numeric], n_bins) if n_numeric else []
    edges += [category_edges(n) for n in n_categories]
    bounds = sorted({0, n_rows, *(int(c * n_rows) for c in cuts)})
    whole = histogram(X, edges, device="cpu")
    shards = [
        histogram(_on(device, X[a:b]), edges, device=device)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    merged = sum(shards, np.zeros_like(whole))
    np.testing.assert_array_equal(merged, whole)
    np.testing.assert_array_equal(whole, reference_histogram(X, edges))
    assert (whole.sum(axis=1) == n_rows).all()


def _on(device: str, X: np.ndarray):
    if device == "gpu":
        import cupy

        return cupy.asarray(X)
    return X
