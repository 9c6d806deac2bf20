"""Compile an XGBoost model (Booster, JSON file, or JSON text) into a `Forest`."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from kernels.forest_model import OBJECTIVES, Forest, validate


class UnsupportedModelError(ValueError):
    """The XGBoost model uses a feature the forest compiler does not support."""


ModelSource = Any  # xgboost.Booster | str | os.PathLike | bytes | bytearray | dict


def compile_forest(model: ModelSource) -> Forest:
    """Compile an XGBoost model into a `Forest`.

    `model` is an `xgboost.Booster`, a path to its JSON model file, the JSON text itself (str or
    bytes), or the already-parsed JSON dict. Supported: gbtree boosters with numerical splits,
    objectives binary:logistic, reg:logistic and reg:squarederror, a single output group.
    """
    return forest_from_json(_load_json(model))


def _load_json(model: ModelSource) -> dict[str, Any]:
    if isinstance(model, dict):
        return model
    if hasattr(model, "get_booster"):  # the scikit-learn wrappers (XGBClassifier, ...)
        model = model.get_booster()
    if type(model).__name__ == "Booster" and hasattr(model, "save_raw"):
        text: bytes | str = bytes(model.save_raw(raw_format="json"))
    elif isinstance(model, bytes | bytearray | memoryview):
        text = bytes(model)
    elif isinstance(model, str) and model.lstrip().startswith("{"):
        text = model
    elif isinstance(model, str | os.PathLike):
        text = Path(model).read_bytes()
    else:
        raise TypeError(
            "compile_forest expects an xgboost.Booster, a JSON model path, JSON text/bytes or a "
            f"dict, got {type(model).__name__}"
        )
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedModelError(
            "the model is not XGBoost JSON (a binary .ubj/.bin model? save it with a .json name)"
        ) from exc


def forest_from_json(doc: dict[str, Any]) -> Forest:
    """Compile a parsed XGBoost JSON model document (XGBoost 1.x-3.x schema)."""
    try:
        learner = doc["learner"]
    except (KeyError, TypeError) as exc:
        raise UnsupportedModelError("not an XGBoost JSON model: no 'learner' section") from exc
    booster = learner["gradient_booster"]
    name = booster.get("name", "gbtree")
    if name != "gbtree":
        raise UnsupportedModelError(
            f"booster {name!r} is not supported (only 'gbtree'; dart weights and gblinear are not)"
        )
    param = learner["learner_model_param"]
    n_class = int(param.get("num_class", "0"))
    n_target = int(param.get("num_target", "1"))
    if n_class > 1 or n_target > 1:
        raise UnsupportedModelError(
            f"multi-class/multi-output models are not supported "
            f"(num_class={n_class}, num_target={n_target}); only a single output is"
        )
    objective = learner["objective"]["name"]
    if objective not in OBJECTIVES:
        raise UnsupportedModelError(
            f"objective {objective!r} is not supported; supported: {', '.join(OBJECTIVES)}"
        )
    base_score = _parse_base_score(param["base_score"])
    n_features = int(param["num_feature"])
    feature_names = tuple(learner.get("feature_names") or ()) or None
    model = booster["model"]
    trees = model["trees"]
    groups = model.get("tree_info", [0] * len(trees))
    if any(int(g) != 0 for g in groups):
        raise UnsupportedModelError("multi-class models (several output groups) are not supported")
    return _build_forest(
        trees,
        n_features=n_features,
        objective=objective,
        base_score=base_score,
        feature_names=feature_names,
    )


def _parse_base_score(raw: Any) -> float:
    """base_score as stored: a number, "5E-1", or (XGBoost >= 3.1) a vector string "[5E-1]"."""
    text = str(raw).strip()
    if text.startswith("["):
        values = [v for v in text.strip("[]").split(",") if v.strip()]
        if len(values) != 1:
            raise UnsupportedModelError(f"base_score {text} has {len(values)} values; expected 1")
        text = values[0]
    return float(text)


def base_margin(objective: str, base_score: float) -> np.float32:
    """The margin every row starts from, computed in float32 as XGBoost does.

    For the logistic objectives XGBoost 3.x evaluates -logf(1.0f / p - 1.0f) with the C
    library's float `logf`; the same libm routine is used here (its results differ in the last
    bit from a correctly rounded log for ~0.6% of inputs).
    """
    p = np.float32(base_score)
    if objective == "reg:squarederror":
        return p
    if not 0.0 < p < 1.0:
        raise UnsupportedModelError(f"base_score {base_score} is not a probability in (0, 1)")
    one = np.float32(1.0)
    q = np.float32(one / p - one)
    return np.float32(-_logf(q))


@functools.cache
def _libm_logf() -> Any:
    name = ctypes.util.find_library("m")
    try:
        fn = ctypes.CDLL(name).logf if name else None
    except OSError:
        fn = None
    if fn is not None:
        fn.restype = ctypes.c_float
        fn.argtypes = [ctypes.c_float]
    return fn


def _logf(q: np.float32) -> np.float32:
    fn = _libm_logf()
    if fn is None:
        return np.float32(np.log(np.float64(q)))
    return np.float32(fn(float(q)))


def _feature_label(index: int, names: tuple[str, ...] | None) -> str:
    if names is not None and 0 <= index < len(names):
        return f"{names[index]!r} (index {index})"
    return f"f{index} (index {index})"


def _build_forest(
    trees: list[dict[str, Any]],
    *,
    n_features: int,
    objective: str,
    base_score: float,
    feature_names: tuple[str, ...] | None,
) -> Forest:
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "default_left", "left_child", "leaf_value")
    }
    sizes, depths = [], []
    for t, tree in enumerate(trees):
        nodes, depth = _compile_tree(t, tree, feature_names)
        for key, arr in nodes.items():
            parts[key].append(arr)
        sizes.append(nodes["feature"].shape[0])
        depths.append(depth)
        used = nodes["feature"]
        if used.size and used.max() >= n_features:
            raise UnsupportedModelError(
                f"tree {t} splits on feature {int(used.max())} but the model has "
                f"num_feature={n_features}"
            )
    offsets = np.zeros(len(trees) + 1, np.int64)
    np.cumsum(np.asarray(sizes, np.int64), out=offsets[1:])

    def cat(key: str, dtype: Any) -> np.ndarray:
        return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.empty(0, dtype)

    forest = Forest(
        n_features=n_features,
        objective=objective,
        base_score=base_score,
        base_margin=base_margin(objective, base_score),
        tree_offsets=offsets,
        tree_depths=np.asarray(depths, np.int32),
        feature=cat("feature", np.int32),
        threshold=cat("threshold", np.float32),
        default_left=cat("default_left", np.uint8),
        left_child=cat("left_child", np.int32),
        leaf_value=cat("leaf_value", np.float32),
        feature_names=feature_names,
    )
    validate(forest)
    return forest


def _compile_tree(
    t: int, tree: dict[str, Any], names: tuple[str, ...] | None
) -> tuple[dict[str, np.ndarray], int]:
    """One XGBoost tree renumbered breadth-first (siblings adjacent, leaves self-looping)."""
    left = np.asarray(tree["left_children"], np.int64)
    right = np.asarray(tree["right_children"], np.int64)
    split_index = np.asarray(tree["split_indices"], np.int64)
    cond = np.asarray(tree["split_conditions"], np.float64).astype(np.float32)
    dleft = np.asarray(tree["default_left"], np.int64).astype(np.uint8)
    n = left.shape[0]
    size_leaf_vector = int(tree.get("tree_param", {}).get("size_leaf_vector", "1") or 1)
    if size_leaf_vector > 1:
        raise UnsupportedModelError(f"tree {t} has vector leaves (multi-target trees)")
    split_type = np.asarray(tree.get("split_type") or np.zeros(n), np.int64)
    categorical = (split_type != 0) & (left != -1)
    if categorical.any():
        node = int(np.flatnonzero(categorical)[0])
        raise UnsupportedModelError(
            f"tree {t} node {node} has a categorical split on feature "
            f"{_feature_label(int(split_index[node]), names)}; only numerical splits are "
            "supported (train with enable_categorical=False on encoded codes)"
        )
    if not (left.shape == right.shape == split_index.shape == cond.shape == dleft.shape):
        raise UnsupportedModelError(f"tree {t}: node arrays have different lengths")
    unpaired = (left != -1) & (right != left + 1)
    if unpaired.any():
        # XGBoost's predictor takes the right child to be left + 1; a model where it is not
        # would be scored differently by XGBoost than its JSON says.
        node = int(np.flatnonzero(unpaired)[0])
        raise UnsupportedModelError(
            f"tree {t} node {node}: right child {int(right[node])} is not left child + 1"
        )

    order: list[int] = []
    depth_of: list[int] = []
    queue = deque([(0, 0)])
    while queue:
        node, depth = queue.popleft()
        if not 0 <= node < n or len(order) > n:
            raise UnsupportedModelError(f"tree {t}: malformed child index {node}")
        order.append(node)
        depth_of.append(depth)
        if left[node] != -1:
            queue.append((int(left[node]), depth + 1))
            queue.append((int(right[node]), depth + 1))
    old = np.asarray(order, np.int64)
    new_of_old = np.full(n, -1, np.int64)
    new_of_old[old] = np.arange(old.shape[0])
    is_leaf = left[old] == -1
    left_new = np.where(is_leaf, np.arange(old.shape[0]), new_of_old[np.maximum(left[old], 0)])
    # Breadth-first order puts a node's right child right after its left child.
    right_ok = new_of_old[right[old[~is_leaf]]] == left_new[~is_leaf] + 1
    if not right_ok.all():
        raise UnsupportedModelError(f"tree {t}: a node is reachable twice")
    nodes = {
        "feature": np.where(is_leaf, -1, split_index[old]).astype(np.int32),
        "threshold": np.where(is_leaf, np.float32(np.nan), cond[old]).astype(np.float32),
        "default_left": np.where(is_leaf, 1, dleft[old]).astype(np.uint8),
        "left_child": left_new.astype(np.int32),
        "leaf_value": np.where(is_leaf, cond[old], np.float32(0)).astype(np.float32),
    }
    return nodes, max(depth_of)
