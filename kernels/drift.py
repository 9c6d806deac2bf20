"""Drift statistics between two per-feature histograms (rows: features, columns: bins)."""

from __future__ import annotations

import numpy as np


def _distributions(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float) -> tuple:
    ref = np.atleast_2d(np.asarray(ref_counts, dtype=np.float64))
    cur = np.atleast_2d(np.asarray(cur_counts, dtype=np.float64))
    if ref.shape != cur.shape:
        raise ValueError(f"histograms differ in shape: {ref.shape} vs {cur.shape}")
    p = ref / np.maximum(ref.sum(axis=1, keepdims=True), 1.0)
    q = cur / np.maximum(cur.sum(axis=1, keepdims=True), 1.0)
    if eps:
        p = np.maximum(p, eps)
        q = np.maximum(q, eps)
        p /= p.sum(axis=1, keepdims=True)
        q /= q.sum(axis=1, keepdims=True)
    return p, q


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Population stability index per feature: sum((q - p) * ln(q / p)).

    Bin shares are floored at `eps` (then renormalised) so empty bins give a finite value.
    """
    p, q = _distributions(ref_counts, cur_counts, eps)
    return np.sum((q - p) * np.log(q / p), axis=1)


def jensen_shannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance per feature (base-2, in [0, 1]; sqrt of the divergence)."""
    p, q = _distributions(ref_counts, cur_counts, 0.0)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.sqrt(np.clip(0.5 * (kl_p + kl_q), 0.0, 1.0))
