"""Launcher of kernels/forest.cu through CuPy: kernel variant and grid chosen by model shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.device import CudaTarget, cuda_target
from kernels.forest_model import Forest, gpu_node_table

BLOCK = 256
# Per-block staging budget: 48 KiB needs no opt-in and still lets four blocks share an SM.
SHARED_BYTES = 48 * 1024
NODE_BYTES = 16
MAX_UNROLLED_DEPTH = 10


@dataclass(frozen=True)
class LaunchPlan:
    """Which kernel runs, how it is instantiated and how many blocks it gets."""

    kernel: str
    grid: int
    block: int
    shared_bytes: int


def plan_launch(forest: Forest, n_rows: int, sm_count: int) -> LaunchPlan:
    """The kernel and grid for `n_rows` rows of `forest` on a device with `sm_count` SMs."""
    resident = sm_count * 2048  # threads the device keeps in flight
    if n_rows * 8 < resident and forest.n_trees >= 64:
        warps = min(n_rows, sm_count * 16)
        return LaunchPlan("forest_tree_parallel", -(-warps * 32 // BLOCK), BLOCK, 0)
    rows = 4 if n_rows >= 4 * resident else 2 if n_rows >= 2 * resident else 1
    depths = forest.tree_depths
    fixed = (
        int(depths[0])
        if forest.n_trees and (depths == depths[0]).all() and depths[0] <= MAX_UNROLLED_DEPTH
        else 0
    )
    sizes = np.diff(forest.tree_offsets)
    shared = bool(forest.n_trees) and int(sizes.max()) * NODE_BYTES <= SHARED_BYTES
    shared_bytes = _chunk_nodes(forest) * NODE_BYTES if shared else 0
    name = f"forest_rows<{rows}, {'true' if shared else 'false'}, {fixed}>"
    return LaunchPlan(name, -(-n_rows // (BLOCK * rows)), BLOCK, shared_bytes)


def tree_chunks(forest: Forest) -> np.ndarray:
    """Boundaries (int32, first tree of each chunk + n_trees) of consecutive trees whose nodes
    fit together in the shared-memory budget (a tree larger than the budget is its own chunk)."""
    return forest.cached("gpu_chunks", _build_chunks)


def _build_chunks(forest: Forest) -> np.ndarray:
    capacity = SHARED_BYTES // NODE_BYTES
    bounds = [0]
    used = 0
    for t, size in enumerate(np.diff(forest.tree_offsets).tolist()):
        if used and used + size > capacity:
            bounds.append(t)
            used = 0
        used += size
    bounds.append(forest.n_trees)
    return np.asarray(bounds if forest.n_trees else [0, 0], np.int32)


def _chunk_nodes(forest: Forest) -> int:
    bounds = tree_chunks(forest)
    offsets = forest.tree_offsets
    return int(max(offsets[b] - offsets[a] for a, b in zip(bounds[:-1], bounds[1:], strict=True)))


def _device_arrays(forest: Forest, target: CudaTarget) -> dict[str, Any]:
    def build(f: Forest) -> dict[str, Any]:
        return {
            "nodes": target.xp.asarray(gpu_node_table(f)),
            "tree_offsets": target.xp.asarray(f.tree_offsets),
            "tree_depths": target.xp.asarray(f.tree_depths),
            "chunks": target.xp.asarray(tree_chunks(f)),
            "one_chunk": target.xp.asarray(np.array([0, f.n_trees], np.int32)),
        }

    return forest.cached(f"gpu_arrays:{target.name}", build)


def predict_margin_gpu(
    forest: Forest, X: Any, out: Any = None, target: CudaTarget | None = None
) -> Any:
    """Raw margins (float32 vector on the target, CuPy by default) of `forest` for rows `X`."""
    target = target or cuda_target()
    xp = target.xp
    X = xp.ascontiguousarray(xp.asarray(X, dtype=xp.float32))
    n_rows = X.shape[0]
    if out is None:
        out = xp.empty(n_rows, xp.float32)
    if n_rows == 0:
        return out
    plan = plan_launch(forest, n_rows, target.sm_count)
    arrays = _device_arrays(forest, target)
    kernel = target.module("forest.cu", (plan.kernel,)).get_function(plan.kernel)
    base = np.float32(forest.base_margin)
    common = (
        X,
        np.int64(n_rows),
        np.int32(forest.n_features),
        arrays["nodes"],
        arrays["tree_offsets"],
        arrays["tree_depths"],
    )
    if plan.kernel == "forest_tree_parallel":
        args = (*common, np.int32(forest.n_trees), base, out)
    else:
        chunks = arrays["chunks"] if plan.shared_bytes else arrays["one_chunk"]
        args = (*common, chunks, np.int32(chunks.shape[0] - 1), base, out)
    kernel((plan.grid,), (plan.block,), args, shared_mem=plan.shared_bytes)
    return out
