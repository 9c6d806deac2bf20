"""Encode kernel against a plain NumPy reference, on CPU and GPU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernels_testlib import bits

from kernels import build_lookup, encode


def reference_encode(numeric, categorical) -> np.ndarray:
    cols = [np.asarray(c).astype(np.float32) for c in numeric]
    for codes, lookup in categorical:
        codes = np.asarray(codes)
        ids = np.where(codes >= 0, np.asarray(lookup)[np.maximum(codes, 0)], -1)
        cols.append(np.where(ids >= 0, ids.astype(np.float32), np.float32(np.nan)))
    n = len(cols[0])
    return np.stack(cols, axis=1).astype(np.float32) if cols else np.empty((n, 0), np.float32)


def _to_host(a):
    return a.get() if hasattr(a, "get") else a


def test_build_lookup() -> None:
    lookup = build_lookup(["b", "zz", "a", "b", None], ["a", "b", "c", "a"])
    assert lookup.dtype == np.int32
    assert lookup.tolist() == [1, -1, 0, 1, -1]
    assert build_lookup([], ["a"]).shape == (0,)


def test_example(device: str) -> None:
    lookup = build_lookup(["red", "blue", "mauve"], ["blue", "green", "red"])
    X = encode(
        [np.array([1.5, np.nan, 3.0]), np.array([1, 2, 3], np.int64)],
        [(np.array([0, 2, -1], np.int32), lookup)],
        device=device,
    )
    expected = np.array([[1.5, 1, 2], [np.nan, 2, np.nan], [3, 3, np.nan]], np.float32)
    assert _to_host(X).dtype == np.float32
    np.testing.assert_array_equal(_to_host(X), expected)


columns = st.integers(0, 2**32 - 1).flatmap(
    lambda seed: st.tuples(
        st.just(seed), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5000)
    )
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=columns)
def test_matches_numpy_reference(device: str, spec) -> None:
    seed, n_num, n_cat, n_rows = spec
    if n_num + n_cat == 0:
        n_num = 1
    rng = np.random.default_rng(seed)
    numeric = []
    for j in range(n_num):
        col = rng.normal(size=n_rows) * 10.0 ** rng.integers(-3, 8)
        col[rng.random(n_rows) < 0.2] = np.nan
        col[rng.random(n_rows) < 0.01] = np.inf
        numeric.append(col if j % 2 else col.astype(np.float32))
    categorical = []
    for _ in range(n_cat):
        vocab = [f"v{i}" for i in range(rng.integers(1, 30))]
        batch_dict = [f"v{i}" for i in rng.permutation(40)[: rng.integers(1, 40)]]
        lookup = build_lookup(batch_dict, vocab)
        codes = rng.integers(-1, len(batch_dict), n_rows).astype(np.int32)
        categorical.append((codes, lookup))
    X = _to_host(encode(numeric, categorical, device=device))
    ref = reference_encode(numeric, categorical)
    assert X.shape == (n_rows, n_num + n_cat)
    np.testing.assert_array_equal(bits(X), bits(ref))


def test_cpu_kernel_writes_every_element() -> None:
    from kernels.encode import _encode_kernel

    rng = np.random.default_rng(0)
    n = 10_001
    num = rng.normal(size=(1, n)).astype(np.float32)
    codes = rng.integers(-1, 3, (1, n)).astype(np.int32)
    lookups, lookup_ends = np.array([2, -1, 0], np.int32), np.array([3], np.int64)
    out = np.full((n, 2), 0x7FBADBAD, np.uint32).view(np.float32)
    assert _encode_kernel(num, codes, lookups, lookup_ends, out) == 0
    assert not (bits(out) == 0x7FBADBAD).any()


def test_errors(device: str) -> None:
    lookup = np.array([0, 1], np.int32)
    with pytest.raises(ValueError, match="outside"):
        encode([np.zeros(3)], [(np.array([0, 2, -1], np.int32), lookup)], device=device)
    with pytest.raises(ValueError, match="lengths"):
        encode([np.zeros(3), np.zeros(4)], [], device=device)
    with pytest.raises(ValueError, match="at least one"):
        encode([], [], device=device)


def test_empty_rows(device: str) -> None:
    X = encode([np.zeros(0)], [(np.zeros(0, np.int32), np.array([1], np.int32))], device=device)
    assert X.shape == (0, 2)
