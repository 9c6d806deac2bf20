"""Per-feature histograms over fixed bin edges, mergeable by addition across shards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from kernels.binsearch import count_at_most
from kernels.device import CudaTarget, cuda_target, resolve

_SHARED_BYTES = 48 * 1024


def quantile_edges(reference_X: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Per feature of `reference_X` (n_rows, n_features), the distinct inner edges (float32,
    ascending, at most n_bins - 1) splitting its finite values into `n_bins` quantile bins.
    A feature with no finite value gets no edges (a single bin)."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    X = np.asarray(reference_X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError("reference_X must be 2-D (n_rows, n_features)")
    probs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges = []
    for j in range(X.shape[1]):
        col = X[:, j]
        # ±inf are counted in the end bins, but cannot be interpolated between (inf - inf)
        col = col[np.isfinite(col)]
        if col.size == 0 or probs.size == 0:
            edges.append(np.empty(0, np.float32))
            continue
        q = np.quantile(col.astype(np.float64), probs, method="linear").astype(np.float32)
        edges.append(np.unique(q))
    return edges


def category_edges(n_categories: int) -> np.ndarray:
    """Edges that give each category code 0..n_categories-1 (as floats) a bin of its own."""
    return (np.arange(max(n_categories - 1, 0), dtype=np.float32) + np.float32(0.5)).astype(
        np.float32
    )


def histogram(X: Any, edges: Sequence[np.ndarray], device: str = "auto") -> np.ndarray:
    """Counts (int64, NumPy) of shape (n_features, n_bins_max + 1) of the rows `X`.

    `X` is float32 (n_rows, n_features), NaN = missing; `edges[j]` are feature j's ascending bin
    edges (float32); a value's bin is the number of edges <= x, so feature j uses bins
    0..len(edges[j]); n_bins_max = max(len(e) + 1). The last column counts missing values.
    Histograms of shards with the same edges add up to the histogram of their union.
    `device`: "cpu", "gpu", or "auto" (the GPU iff `X` is a CuPy array).
    """
    if getattr(X, "ndim", None) != 2:
        raise ValueError("X must be a 2-D array (n_rows, n_features)")
    n_features = X.shape[1]
    if len(edges) != n_features:
        raise ValueError(f"got {len(edges)} edge arrays for {n_features} features")
    cuts, offsets = _flatten_edges(edges)
    n_slots = int(np.diff(offsets).max(initial=0)) + 2
    if resolve(device, X) == "gpu":
        return _histogram_gpu(X, cuts, offsets, n_slots)
    X = np.ascontiguousarray(X, dtype=np.float32)
    n_chunks = max(1, min(numba.get_num_threads() * 4, X.shape[0] // 1024 + 1))
    return _histogram_kernel(X, cuts, offsets, n_slots, n_chunks)


def _flatten_edges(edges: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.asarray(e, dtype=np.float32).ravel() for e in edges]
    for j, e in enumerate(arrays):
        if np.isnan(e).any() or (np.diff(e) < 0).any():
            raise ValueError(f"edges of feature {j} must be ascending and free of NaN")
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    cuts = np.concatenate(arrays) if arrays else np.empty(0, np.float32)
    return cuts.astype(np.float32), offsets


@njit(cache=True, inline="always")
def _slot(x, cuts, lo, hi, nan_slot):
    if x != x:
        return nan_slot
    return count_at_most(cuts, lo, hi, x)


@njit(parallel=True, cache=True)
def _histogram_kernel(X, cuts, offsets, n_slots, n_chunks):
    n_rows, n_features = X.shape
    partial = np.zeros((n_chunks, n_features, n_slots), np.int64)
    step = (n_rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        for r in range(c * step, min(n_rows, (c + 1) * step)):
            for f in range(n_features):
                s = _slot(X[r, f], cuts, offsets[f], offsets[f + 1], n_slots - 1)
                partial[c, f, s] += 1
    return partial.sum(axis=0)


def _histogram_gpu(
    X: Any, cuts: np.ndarray, offsets: np.ndarray, n_slots: int, target: CudaTarget | None = None
) -> np.ndarray:
    target = target or cuda_target()
    xp = target.xp
    X = xp.ascontiguousarray(xp.asarray(X, dtype=xp.float32))
    n_rows, n_features = X.shape
    counts = xp.zeros((n_features, n_slots), xp.uint64)
    if n_rows and n_features:
        table_bytes = n_features * n_slots * 4
        private = table_bytes <= _SHARED_BYTES
        name = f"histogram_counts<{'true' if private else 'false'}>"
        kernel = target.module("histogram.cu", (name,)).get_function(name)
        grid = max(1, min(-(-n_rows * n_features // 256), target.sm_count * 8))
        kernel(
            (grid,),
            (256,),
            (
                X,
                np.int64(n_rows),
                np.int32(n_features),
                xp.asarray(cuts),
                xp.asarray(offsets),
                np.int32(n_slots),
                counts,
            ),
            shared_mem=table_bytes if private else 0,
        )
    return target.to_host(counts).astype(np.int64)
