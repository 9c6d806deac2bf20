"""CPU twin of the forest kernel (Numba): margins bit-identical to XGBoost's CPU predictor.

Each row's margin is accumulated in float32 from the float32 base margin, adding trees in the
model's order, exactly as XGBoost does; that order is kept by every variant here.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.binsearch import count_at_most
from kernels.forest_model import (
    NAN_BIN,
    NAN_KEY,
    BinnedLayout,
    Forest,
    binned_layout,
    key_layout,
    lane_nodes,
)

# Rows walked together: their values (ROW_BLOCK * n_features * 4 bytes, or 2 bytes per used
# feature once binned) and the tree being walked stay in L1 while the block passes every tree.
ROW_BLOCK = 256
# Rows advanced in lock-step through a tree, their node indices in registers: eight independent
# load chains hide the latency of each dependent node -> feature load.
_LANES = 8
# Deeper than this, the binned walk wins (see kernels/forest_model.py).
BINNED_MIN_DEPTH = 11


def predict_margin_cpu(
    forest: Forest, X: np.ndarray, out: np.ndarray | None = None, method: str = "auto"
) -> np.ndarray:
    """Raw margins of `forest` for C-contiguous float32 rows `X`, written into `out` (float32).

    `method`: "lanes" (lock-step walk on the float inputs), "binned" (the same on uint16 bins;
    unavailable past 65533 distinct thresholds per feature or 65535 nodes per tree), "scalar"
    (one row at a time; the plain reference twin), or "auto" (binned for trees deeper than 10
    when available, else lanes). All give the same bits.
    """
    n_rows = X.shape[0]
    if out is None:
        out = np.empty(n_rows, np.float32)
    if n_rows == 0:
        return out
    if method == "auto":
        method = "keys"
    if method == "lanes":
        _predict_lanes(
            X,
            lane_nodes(forest),
            forest.threshold,
            forest.tree_offsets,
            forest.tree_depths,
            forest.leaf_value,
            forest.base_margin,
            out,
        )
    elif method == "binned":
        layout = binned_layout(forest)
        if layout is None:
            raise ValueError("this forest exceeds the binned layout's limits")
        _predict_binned(
            X,
            _as_args(layout),
            forest.tree_offsets,
            forest.tree_depths,
            forest.leaf_value,
            forest.base_margin,
            out,
        )
    elif method == "keys":
        layout = key_layout(forest)
        _predict_keys(
            X.view(np.uint32),
            layout.used_features,
            layout.nodes,
            layout.nodes.view(np.float32),
            forest.tree_offsets,
            forest.tree_depths,
            forest.base_margin,
            key_block_rows(layout.used_features.shape[0]),
            out,
        )
    elif method == "scalar":
        _predict_scalar(
            X,
            forest.tree_offsets,
            forest.feature,
            forest.threshold,
            forest.default_left,
            forest.left_child,
            forest.leaf_value,
            forest.base_margin,
            out,
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    return out


def _as_args(layout: BinnedLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return layout.used_features, layout.cuts, layout.cut_offsets, layout.nodes


@njit(cache=True, inline="always")
def _bin(cuts: np.ndarray, lo: int, hi: int, x: np.float32) -> np.uint16:
    """Number of cuts[lo:hi] that are <= x (NaN: NAN_BIN)."""
    if x != x:
        return np.uint16(NAN_BIN)
    return np.uint16(count_at_most(cuts, lo, hi, x))


@njit(cache=True, inline="always")
def _step(nodes, off, q, row, idx):
    """One branch-free step of a lane: the next local node index."""
    w = nodes[off + idx]
    b = q[row + ((w >> np.uint64(32)) & np.uint64(0xFFFF))]
    right = (b > (w & np.uint64(0xFFFF))) ^ (b == ((w >> np.uint64(16)) & np.uint64(0xFFFF)))
    return (w >> np.uint64(48)) + np.uint64(right)


@njit(parallel=True, cache=True)
def _predict_binned(X, layout, tree_offsets, tree_depths, leaf_value, base_margin, out):
    used, cuts, cut_offsets, nodes = layout
    n_rows = X.shape[0]
    n_used = used.shape[0]
    stride = max(n_used, 1)
    n_trees = tree_depths.shape[0]
    n_blocks = (n_rows + ROW_BLOCK - 1) // ROW_BLOCK
    for blk in prange(n_blocks):
        r0 = blk * ROW_BLOCK
        nb = min(n_rows, r0 + ROW_BLOCK) - r0
        n_groups = (nb + _LANES - 1) // _LANES
        n_pad = n_groups * _LANES
        q = np.zeros(n_pad * stride, np.uint16)
        for i in range(nb):
            for u in range(n_used):
                x = X[r0 + i, used[u]]
                q[i * stride + u] = _bin(cuts, cut_offsets[u], cut_offsets[u + 1], x)
        acc = np.full(n_pad, base_margin, np.float32)
        for t in range(n_trees):
            off = np.uint64(tree_offsets[t])
            depth = tree_depths[t]
            for g in range(n_groups):
                row = np.uint64(g * _LANES * stride)
                s = np.uint64(stride)
                i0 = np.uint64(0)
                i1 = np.uint64(0)
                i2 = np.uint64(0)
                i3 = np.uint64(0)
                i4 = np.uint64(0)
                i5 = np.uint64(0)
                i6 = np.uint64(0)
                i7 = np.uint64(0)
                for _ in range(depth):
                    i0 = _step(nodes, off, q, row, i0)
                    i1 = _step(nodes, off, q, row + s, i1)
                    i2 = _step(nodes, off, q, row + np.uint64(2) * s, i2)
                    i3 = _step(nodes, off, q, row + np.uint64(3) * s, i3)
                    i4 = _step(nodes, off, q, row + np.uint64(4) * s, i4)
                    i5 = _step(nodes, off, q, row + np.uint64(5) * s, i5)
                    i6 = _step(nodes, off, q, row + np.uint64(6) * s, i6)
                    i7 = _step(nodes, off, q, row + np.uint64(7) * s, i7)
                a = g * _LANES
                acc[a] += leaf_value[off + i0]
                acc[a + 1] += leaf_value[off + i1]
                acc[a + 2] += leaf_value[off + i2]
                acc[a + 3] += leaf_value[off + i3]
                acc[a + 4] += leaf_value[off + i4]
                acc[a + 5] += leaf_value[off + i5]
                acc[a + 6] += leaf_value[off + i6]
                acc[a + 7] += leaf_value[off + i7]
        for i in range(nb):
            out[r0 + i] = acc[i]


@njit(parallel=True, cache=True)
def _predict_scalar(
    X, tree_offsets, feature, threshold, default_left, left_child, leaf_value, base_margin, out
):
    n_rows = X.shape[0]
    n_trees = tree_offsets.shape[0] - 1
    for r in prange(n_rows):
        acc = np.float32(base_margin)
        for t in range(n_trees):
            off = tree_offsets[t]
            i = 0
            f = feature[off]
            while f >= 0:
                x = X[r, f]
                # XGBoost: left iff x < threshold; a missing value follows default_left.
                go_right = default_left[off + i] == 0 if x != x else not x < threshold[off + i]
                i = left_child[off + i] + (1 if go_right else 0)
                f = feature[off + i]
            acc += leaf_value[off + i]
        out[r] = acc


@njit(cache=True, inline="always")
def _lane_step(nodes, threshold, off, x_flat, row, idx):
    """One branch-free step of a lane on float inputs: the next local node index."""
    k = off + idx
    w = nodes[k]
    x = x_flat[row + (w & np.uint64(0xFFFFFFFF))]
    # not (x < t) == (x >= t) for non-NaN x; a leaf's NaN threshold never sends a row right.
    right = (x >= threshold[k]) | ((x != x) & ((w >> np.uint64(63)) != np.uint64(0)))
    return ((w >> np.uint64(32)) & np.uint64(0x7FFFFFFF)) + np.uint64(right)


@njit(parallel=True, cache=True)
def _predict_lanes(X, nodes, threshold, tree_offsets, tree_depths, leaf_value, base_margin, out):
    n_rows, n_features = X.shape
    x_flat = X.reshape(n_rows * n_features)
    n_trees = tree_depths.shape[0]
    n_blocks = (n_rows + ROW_BLOCK - 1) // ROW_BLOCK
    for blk in prange(n_blocks):
        r0 = blk * ROW_BLOCK
        nb = min(n_rows, r0 + ROW_BLOCK) - r0
        n_pad = (nb + _LANES - 1) // _LANES * _LANES
        acc = np.full(n_pad, base_margin, np.float32)
        # Padding lanes re-walk the block's last row; their sums are never written.
        starts = np.empty(n_pad, np.uint64)
        for i in range(n_pad):
            starts[i] = np.uint64((r0 + min(i, nb - 1)) * n_features)
        for t in range(n_trees):
            off = np.uint64(tree_offsets[t])
            depth = tree_depths[t]
            for a in range(0, n_pad, _LANES):
                p0 = starts[a]
                p1 = starts[a + 1]
                p2 = starts[a + 2]
                p3 = starts[a + 3]
                p4 = starts[a + 4]
                p5 = starts[a + 5]
                p6 = starts[a + 6]
                p7 = starts[a + 7]
                i0 = np.uint64(0)
                i1 = np.uint64(0)
                i2 = np.uint64(0)
                i3 = np.uint64(0)
                i4 = np.uint64(0)
                i5 = np.uint64(0)
                i6 = np.uint64(0)
                i7 = np.uint64(0)
                for _ in range(depth):
                    i0 = _lane_step(nodes, threshold, off, x_flat, p0, i0)
                    i1 = _lane_step(nodes, threshold, off, x_flat, p1, i1)
                    i2 = _lane_step(nodes, threshold, off, x_flat, p2, i2)
                    i3 = _lane_step(nodes, threshold, off, x_flat, p3, i3)
                    i4 = _lane_step(nodes, threshold, off, x_flat, p4, i4)
                    i5 = _lane_step(nodes, threshold, off, x_flat, p5, i5)
                    i6 = _lane_step(nodes, threshold, off, x_flat, p6, i6)
                    i7 = _lane_step(nodes, threshold, off, x_flat, p7, i7)
                acc[a] += leaf_value[off + i0]
                acc[a + 1] += leaf_value[off + i1]
                acc[a + 2] += leaf_value[off + i2]
                acc[a + 3] += leaf_value[off + i3]
                acc[a + 4] += leaf_value[off + i4]
                acc[a + 5] += leaf_value[off + i5]
                acc[a + 6] += leaf_value[off + i6]
                acc[a + 7] += leaf_value[off + i7]
        for i in range(nb):
            out[r0 + i] = acc[i]


# Rows of a block of the key walk: as many as fit KEY_BLOCK_BYTES of keys (an eighth of a 512 KiB
# L2), at most KEY_BLOCK_MAX_ROWS. Each tree is read once per block, and the whole forest
# (1-5 MB) does not stay in L2: large blocks amortise fetching it (see forest_model.py).
KEY_BLOCK_BYTES = 64 * 1024
KEY_BLOCK_MAX_ROWS = 1024


def key_block_rows(n_used: int) -> int:
    """Rows per block of the key walk for a model reading `n_used` input columns."""
    rows = KEY_BLOCK_BYTES // (4 * max(n_used, 1))
    return int(min(KEY_BLOCK_MAX_ROWS, max(_LANES * 8, rows // _LANES * _LANES)))


@njit(cache=True, inline="always")
def _key(b):
    """Order-preserving key of float32 bits `b` (uint64 holding 32 bits); NaN -> NAN_KEY."""
    if (b & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000):
        return np.uint64(NAN_KEY)
    if b == np.uint64(0x80000000):  # -0.0 compares equal to +0.0
        return np.uint64(0x80000000)
    if b >> np.uint64(31):
        return ~b & np.uint64(0xFFFFFFFF)
    return b | np.uint64(0x80000000)


@njit(cache=True, inline="always")
def _key_step(nodes, off2, keys, lane_base, idx):
    """One branch-free step of a lane on keys: the next local node index (times 2)."""
    k = off2 + idx
    w0 = nodes[k]
    w1 = nodes[k + np.uint64(1)]
    x = np.uint64(keys[lane_base + (w1 & np.uint64(0xFFFFFFFF))])
    right = (x - (w0 & np.uint64(0xFFFFFFFF))) < (w0 >> np.uint64(32))
    return (w1 >> np.uint64(32)) + np.uint64(2) * np.uint64(right)


@njit(parallel=True, cache=True)
def _predict_keys(
    X_bits, used, nodes, leaf_bits, tree_offsets, tree_depths, base_margin, block_rows, out
):
    n_rows = X_bits.shape[0]
    n_used = used.shape[0]
    stride = max(n_used, 1) * _LANES
    n_trees = tree_depths.shape[0]
    n_blocks = (n_rows + block_rows - 1) // block_rows
    for blk in prange(n_blocks):
        r0 = blk * block_rows
        nb = min(n_rows, r0 + block_rows) - r0
        n_groups = (nb + _LANES - 1) // _LANES
        keys = np.empty(n_groups * stride, np.uint32)
        # Padding lanes walk the block's last row; their sums are never written.
        for i in range(n_groups * _LANES):
            r = r0 + min(i, nb - 1)
            base = (i // _LANES) * stride + (i % _LANES)
            for u in range(n_used):
                keys[base + u * _LANES] = np.uint32(_key(np.uint64(X_bits[r, used[u]])))
        acc = np.full(n_groups * _LANES, base_margin, np.float32)
        for t in range(n_trees):
            off2 = np.uint64(2 * tree_offsets[t])
            depth = tree_depths[t]
            for g in range(n_groups):
                gb = np.uint64(g * stride)
                i0 = np.uint64(0)
                i1 = np.uint64(0)
                i2 = np.uint64(0)
                i3 = np.uint64(0)
                i4 = np.uint64(0)
                i5 = np.uint64(0)
                i6 = np.uint64(0)
                i7 = np.uint64(0)
                for _ in range(depth):
                    i0 = _key_step(nodes, off2, keys, gb, i0)
                    i1 = _key_step(nodes, off2, keys, gb + np.uint64(1), i1)
                    i2 = _key_step(nodes, off2, keys, gb + np.uint64(2), i2)
                    i3 = _key_step(nodes, off2, keys, gb + np.uint64(3), i3)
                    i4 = _key_step(nodes, off2, keys, gb + np.uint64(4), i4)
                    i5 = _key_step(nodes, off2, keys, gb + np.uint64(5), i5)
                    i6 = _key_step(nodes, off2, keys, gb + np.uint64(6), i6)
                    i7 = _key_step(nodes, off2, keys, gb + np.uint64(7), i7)
                a = g * _LANES
                # A leaf's word 0 holds its value's bits (leaf_bits: the nodes as float32).
                acc[a] += leaf_bits[np.uint64(2) * (off2 + i0)]
                acc[a + 1] += leaf_bits[np.uint64(2) * (off2 + i1)]
                acc[a + 2] += leaf_bits[np.uint64(2) * (off2 + i2)]
                acc[a + 3] += leaf_bits[np.uint64(2) * (off2 + i3)]
                acc[a + 4] += leaf_bits[np.uint64(2) * (off2 + i4)]
                acc[a + 5] += leaf_bits[np.uint64(2) * (off2 + i5)]
                acc[a + 6] += leaf_bits[np.uint64(2) * (off2 + i6)]
                acc[a + 7] += leaf_bits[np.uint64(2) * (off2 + i7)]
        for i in range(nb):
            out[r0 + i] = acc[i]
