"""The GPU launcher's choices (pure host logic, checked without a GPU)."""

from __future__ import annotations

import numpy as np
from kernels_testlib import complete_tree_model_json, random_model_json

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
    forest = compile_forest(complete_tree_model_json(depth=12, n_features=5))
    assert int(np.diff(forest.tree_offsets).max()) * NODE_BYTES > SHARED_BYTES
    plan = plan_launch(forest, 1_000_000, sm_count=132)
    assert ", false," in plan.kernel and plan.shared_bytes == 0
