"""The GPU launcher's choices (pure host logic, checked without a GPU)."""

from __future__ import annotations

import json

import numpy as np
from kernels_testlib import random_model_json

from kernels import compile_forest
from kernels.forest_gpu import NODE_BYTES, SHARED_BYTES, plan_launch, tree_chunks


def test_chunks_cover_all_trees_and_fit_shared_memory() -> None:
    forest = compile_forest(random_model_json(1, 300, 8, 20, "binary:logistic")[0])
    bounds = tree_chunks(forest)
    assert bounds[0] == 0 and bounds[-1] == forest.n_trees and (np.diff(bounds) > 0).all()
    nodes = forest.tree_offsets[bounds[1:]] - forest.tree_offsets[bounds[:-1]]
    assert (nodes * NODE_BYTES <= SHARED_BYTES).all()


def test_kernel_choice_by_shape() -> None:
    forest = compile_forest(random_model_json(2, 200, 6, 10, "binary:logistic")[0])
    assert plan_launch(forest, 100, sm_count=132).kernel == "forest_tree_parallel"
    big = plan_launch(forest, 4_000_000, sm_count=132)
    assert big.kernel.startswith("forest_rows<4, true,") and big.shared_bytes <= SHARED_BYTES
    assert big.grid * big.block * 4 >= 4_000_000
    assert plan_launch(forest, 300_000, sm_count=132).kernel.startswith("forest_rows<1, true,")


def test_trees_too_large_for_shared_memory_read_global() -> None:
    doc = json.loads(random_model_json(3, 1, 1, 5, "reg:squarederror")[0])
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    n = 2**13 - 1  # a complete tree of depth 12
    internal = np.arange(n) < n // 2
    children = np.where(internal, 2 * np.arange(n) + 1, -1)
    tree.update(
        left_children=children.tolist(),
        right_children=np.where(internal, children + 1, -1).tolist(),
        parents=[2147483647, *((np.arange(1, n) - 1) // 2).tolist()],
        split_indices=(np.arange(n) % 5).tolist(),
        split_conditions=np.linspace(-1, 1, n).tolist(),
        default_left=[0] * n,
        split_type=[0] * n,
        base_weights=[0.0] * n,
        loss_changes=[0.0] * n,
        sum_hessian=[1.0] * n,
    )
    tree["tree_param"]["num_nodes"] = str(n)
    forest = compile_forest(doc)
    assert int(np.diff(forest.tree_offsets).max()) * NODE_BYTES > SHARED_BYTES
    plan = plan_launch(forest, 1_000_000, sm_count=132)
    assert ", false," in plan.kernel and plan.shared_bytes == 0
