"""Helpers for the kernels tests: random XGBoost models (as JSON XGBoost itself loads) and data."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import xgboost as xgb

OBJECTIVES = ("binary:logistic", "reg:logistic", "reg:squarederror")


@functools.cache
def _template(objective: str) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    params = {"objective": objective, "max_depth": 1, "nthread": 1}
    return bytes(xgb.train(params, xgb.DMatrix(X, y), 1).save_raw("json")).decode()


def _f32(v: float) -> float:
    """A float32 value as the Python float that represents it exactly."""
    return float(np.float32(v))


def random_tree(
    rng: np.random.Generator,
    tree_id: int,
    n_features: int,
    max_depth: int,
    max_nodes: int,
    pools: np.ndarray,
    force_depth: bool,
) -> dict[str, Any]:
    """One random numerical tree in XGBoost's JSON schema."""
    left: list[int] = []
    right: list[int] = []
    parents: list[int] = []
    feat: list[int] = []
    cond: list[float] = []
    dleft: list[int] = []
    budget = [max(1, max_nodes)]

    def new_node(parent: int) -> int:
        left.append(-1)
        right.append(-1)
        parents.append(parent)
        feat.append(0)
        cond.append(0.0)
        dleft.append(0)
        return len(left) - 1

    def grow(i: int, depth: int, on_spine: bool) -> None:
        # XGBoost allocates a node's children as a pair (right == left + 1) and its predictor
        # relies on it; subtrees are then filled depth-first, so the numbering is not BFS.
        split_p = 1.0 if (force_depth and on_spine) else 0.8 - 0.04 * depth
        if depth < max_depth and budget[0] >= 2 and rng.random() < split_p:
            budget[0] -= 2
            f = int(rng.integers(n_features))
            feat[i] = f
            cond[i] = _f32(pools[f, rng.integers(pools.shape[1])])
            dleft[i] = int(rng.integers(2))
            left[i] = new_node(i)
            right[i] = new_node(i)
            grow(left[i], depth + 1, on_spine)
            grow(right[i], depth + 1, False)
        else:
            cond[i] = _f32(rng.normal() * 10.0 ** rng.uniform(-3, 1))

    grow(new_node(2147483647), 0, True)
    n = len(left)
    return {
        "base_weights": [0.0] * n,
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": dleft,
        "id": tree_id,
        "left_children": left,
        "loss_changes": [0.0] * n,
        "parents": parents,
        "right_children": right,
        "split_conditions": cond,
        "split_indices": feat,
        "split_type": [0] * n,
        "sum_hessian": [1.0] * n,
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(n_features),
            "num_nodes": str(n),
            "size_leaf_vector": "1",
        },
    }


def random_model_json(
    seed: int,
    n_trees: int,
    max_depth: int,
    n_features: int,
    objective: str,
    max_total_nodes: int = 60_000,
    pool_size: int = 6,
) -> tuple[str, np.ndarray]:
    """A random model's JSON text and the per-feature threshold pools (n_features, pool_size)."""
    rng = np.random.default_rng(seed)
    doc = json.loads(_template(objective))
    pools = (np.round(rng.normal(size=(n_features, pool_size)), 2)).astype(np.float32)
    per_tree = max(3, max_total_nodes // max(n_trees, 1))
    trees = [
        random_tree(rng, t, n_features, max_depth, per_tree, pools, force_depth=t == 0)
        for t in range(n_trees)
    ]
    if objective == "reg:squarederror":
        base = _f32(rng.normal() * 3)
    else:
        base = _f32(rng.uniform(0.02, 0.98))
    learner = doc["learner"]
    learner["learner_model_param"]["base_score"] = f"[{base!r}]"
    learner["learner_model_param"]["num_feature"] = str(n_features)
    learner["feature_names"] = []
    learner["feature_types"] = []
    model = learner["gradient_booster"]["model"]
    model["trees"] = trees
    model["tree_info"] = [0] * n_trees
    model["iteration_indptr"] = list(range(n_trees + 1))
    model["gbtree_model_param"]["num_trees"] = str(n_trees)
    return json.dumps(doc), pools


def load_booster(model_json: str, nthread: int = 2) -> xgb.Booster:
    """An XGBoost Booster from JSON text."""
    booster = xgb.Booster(model_file=bytearray(model_json.encode()))
    booster.set_param({"nthread": nthread})
    return booster


def random_rows(
    seed: int,
    n_rows: int,
    pools: np.ndarray,
    missing: float,
    with_inf: bool = False,
) -> np.ndarray:
    """float32 rows mixing exact threshold values (ties), normal noise, NaN and optionally ±inf."""
    rng = np.random.default_rng(seed)
    n_features = pools.shape[0]
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    tie = rng.random(X.shape) < 0.3
    cols = np.broadcast_to(np.arange(n_features), X.shape)
    picks = pools[cols, rng.integers(pools.shape[1], size=X.shape)]
    X[tie] = picks[tie]
    X[rng.random(X.shape) < missing] = np.nan
    if with_inf:
        X[rng.random(X.shape) < 0.03] = np.inf
        X[rng.random(X.shape) < 0.03] = -np.inf
    return X


def xgb_margin(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    """XGBoost's margins: DMatrix(missing=NaN) predict, or inplace_predict when X holds inf
    (DMatrix refuses inf unless it is the missing value)."""
    if X.shape[0] == 0:
        return np.empty(0, np.float32)
    if np.isinf(X).any():
        return booster.inplace_predict(X, predict_type="margin", missing=np.nan)
    return booster.predict(xgb.DMatrix(X, missing=np.nan), output_margin=True)


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float32 array, for bit-for-bit comparison."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def complete_tree_model_json(depth: int, n_features: int, seed: int = 5) -> str:
    """A model of one complete tree of `depth` (2**(depth + 1) - 1 nodes) with random
    thresholds, default directions and leaves: larger than any shared-memory chunk at 12."""
    doc = json.loads(random_model_json(seed, 1, 1, n_features, "reg:squarederror")[0])
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    n = 2 ** (depth + 1) - 1
    internal = np.arange(n) < n // 2
    children = np.where(internal, 2 * np.arange(n) + 1, -1)
    rng = np.random.default_rng(seed)
    tree.update(
        left_children=children.tolist(),
        right_children=np.where(internal, children + 1, -1).tolist(),
        parents=[2147483647, *((np.arange(1, n) - 1) // 2).tolist()],
        split_indices=(np.arange(n) % n_features).tolist(),
        split_conditions=np.round(rng.normal(size=n), 1).astype(np.float32).tolist(),
        default_left=(np.arange(n) % 3 == 0).astype(int).tolist(),
        split_type=[0] * n,
        base_weights=np.round(rng.normal(size=n), 3).astype(np.float32).tolist(),
        loss_changes=[0.0] * n,
        sum_hessian=[1.0] * n,
    )
    tree["tree_param"]["num_nodes"] = str(n)
    return json.dumps(doc)
