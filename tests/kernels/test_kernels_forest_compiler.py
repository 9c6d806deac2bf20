"""Forest compiler: layout invariants, base margin, rejections, and .npz save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from kernels_testlib import bits, random_model_json, random_rows

from kernels import Forest, ForestFormatError, UnsupportedModelError, compile_forest, predict
from kernels.forest_compiler import base_margin
from kernels.forest_model import binned_layout


def _small_model(objective: str = "binary:logistic", **params) -> xgb.Booster:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    return xgb.train(
        {"objective": objective, "max_depth": 3, "nthread": 1, **params}, xgb.DMatrix(X, y), 3
    )


def test_layout_invariants() -> None:
    text, _ = random_model_json(11, 40, 9, 7, "reg:squarederror")
    forest = compile_forest(text)
    offs = forest.tree_offsets
    assert offs[0] == 0 and offs[-1] == forest.n_nodes and forest.n_trees == 40
    for t in range(forest.n_trees):
        sl = slice(offs[t], offs[t + 1])
        feat, left = forest.feature[sl], forest.left_child[sl]
        local = np.arange(offs[t + 1] - offs[t])
        leaf = feat < 0
        assert (left[leaf] == local[leaf]).all()  # leaves self-loop
        assert (left[~leaf] > local[~leaf]).all()  # breadth-first: children after parents
        assert np.isnan(forest.threshold[sl][leaf]).all()
        # walking tree_depths[t] steps from the root always ends on a leaf
        idx = np.zeros(1, np.int64)
        frontier = {0}
        for _ in range(int(forest.tree_depths[t])):
            frontier = {int(left[i]) + k for i in frontier for k in ((0,) if leaf[i] else (0, 1))}
        assert all(leaf[i] for i in frontier) and idx.size


def test_arrays_are_contiguous_and_read_only() -> None:
    forest = compile_forest(_small_model())
    for name in ("feature", "threshold", "default_left", "left_child", "leaf_value"):
        arr = getattr(forest, name)
        assert arr.flags.c_contiguous and not arr.flags.writeable


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:logistic"])
def test_base_margin_is_bit_exact_for_logistic(objective: str) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    for p in np.concatenate([rng.uniform(0.001, 0.999, 12), [0.5, 0.1, 0.9]]):
        # eta=0 makes every leaf (+/-)0, so the prediction is the base margin alone.
        booster = xgb.train(
            {
                "objective": objective,
                "base_score": float(p),
                "eta": 0.0,
                "max_depth": 1,
                "nthread": 1,
            },
            xgb.DMatrix(X, y),
            1,
        )
        ref = booster.predict(xgb.DMatrix(X), output_margin=True)
        np.testing.assert_array_equal(bits(predict(compile_forest(booster), X)), bits(ref))


def test_base_margin_formula() -> None:
    assert base_margin("reg:squarederror", 0.25) == np.float32(0.25)
    assert base_margin("binary:logistic", 0.5) == np.float32(0.0)
    with pytest.raises(UnsupportedModelError, match="probability"):
        base_margin("binary:logistic", 1.5)


@pytest.mark.parametrize("raw", ["[5E-1]", "5E-1", "0.5", 0.5, "[5.0000000E-1]"])
def test_base_score_formats(raw) -> None:
    doc = json.loads(bytes(_small_model().save_raw("json")))
    doc["learner"]["learner_model_param"]["base_score"] = raw
    assert compile_forest(doc).base_score == 0.5


def test_rejects_categorical_split_naming_the_feature() -> None:
    rng = np.random.default_rng(0)
    X = np.stack([rng.normal(size=400), rng.integers(0, 5, 400)], 1).astype(np.float32)
    y = (X[:, 1] > 2).astype(np.float32)
    dm = xgb.DMatrix(
        X, y, feature_types=["q", "c"], feature_names=["age", "colour"], enable_categorical=True
    )
    booster = xgb.train({"max_depth": 2, "tree_method": "hist"}, dm, 2)
    with pytest.raises(UnsupportedModelError, match="categorical split on feature 'colour'"):
        compile_forest(booster)


def test_rejects_multiclass() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
        xgb.DMatrix(X, rng.integers(0, 3, 300)),
        2,
    )
    with pytest.raises(UnsupportedModelError, match="multi-class"):
        compile_forest(booster)


def test_rejects_multiple_output_groups_in_tree_info() -> None:
    doc = json.loads(bytes(_small_model().save_raw("json")))
    doc["learner"]["gradient_booster"]["model"]["tree_info"][1] = 1
    with pytest.raises(UnsupportedModelError, match="output groups"):
        compile_forest(doc)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"objective": "reg:absoluteerror"}, "objective"), ({"booster": "dart"}, "dart")],
)
def test_rejects_unsupported(params: dict, match: str) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        compile_forest(_small_model(**params))


def test_rejects_unpaired_children_and_bad_input() -> None:
    doc = json.loads(bytes(_small_model().save_raw("json")))
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["left_children"][0], tree["right_children"][0] = (
        tree["right_children"][0],
        tree["left_children"][0],
    )
    with pytest.raises(UnsupportedModelError, match="left child"):
        compile_forest(doc)
    with pytest.raises(TypeError):
        compile_forest(42)
    with pytest.raises(UnsupportedModelError, match="learner"):
        compile_forest({"not": "a model"})


def test_feature_names_and_num_feature_kept() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, X[:, 0], feature_names=["a", "b", "c"]), 2)
    forest = compile_forest(booster)
    assert forest.feature_names == ("a", "b", "c") and forest.n_features == 3


def test_save_load_round_trip(tmp_path) -> None:
    text, pools = random_model_json(5, 30, 7, 6, "binary:logistic")
    forest = compile_forest(text)
    path = tmp_path / "model.forest.npz"
    forest.save(path)
    loaded = Forest.load(path)
    X = random_rows(6, 100, pools, 0.2, with_inf=True)
    np.testing.assert_array_equal(bits(predict(loaded, X)), bits(predict(forest, X)))
    assert loaded.checksum() == forest.checksum()
    assert (loaded.objective, loaded.n_features) == (forest.objective, forest.n_features)
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only, never pickles
        assert all(npz[name].dtype != object for name in npz.files)


def test_load_refuses_modified_file(tmp_path) -> None:
    forest = compile_forest(_small_model())
    path = tmp_path / "f.npz"
    forest.save(path)
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["leaf_value"] = arrays["leaf_value"].copy()
    arrays["leaf_value"][0] += 1.0
    np.savez(path, **arrays)
    with pytest.raises(ForestFormatError, match="checksum mismatch"):
        Forest.load(path)


def test_load_refuses_other_versions_and_garbage(tmp_path) -> None:
    forest = compile_forest(_small_model())
    path = tmp_path / "f.npz"
    forest.save(path)
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(bytes(arrays["header"]))
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ForestFormatError, match="version 99"):
        Forest.load(path)
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ForestFormatError, match="not a readable"):
        Forest.load(garbage)


def test_binned_layout_limits_fall_back_to_lanes() -> None:
    # 70 000 distinct thresholds on one feature exceed the uint16 bins.
    rng = np.random.default_rng(3)
    n_trees, per_tree = 35, 2001
    doc = json.loads(random_model_json(1, 1, 1, 1, "reg:squarederror")[0])
    trees = []
    for t in range(n_trees):
        n_split = per_tree
        n = 2 * n_split + 1
        cond = rng.normal(size=n).astype(np.float32).astype(float).tolist()
        # A chain: each split's right child is the next split, its left child a leaf.
        left, right, parents = [-1] * n, [-1] * n, [2147483647] * n
        node, nxt = 0, 1
        for _ in range(n_split):
            left[node], right[node] = nxt, nxt + 1
            parents[nxt] = parents[nxt + 1] = node
            node, nxt = nxt + 1, nxt + 2
        trees.append(
            {
                **doc["learner"]["gradient_booster"]["model"]["trees"][0],
                "id": t,
                "left_children": left,
                "right_children": right,
                "parents": parents,
                "split_conditions": cond,
                "split_indices": [0] * n,
                "default_left": [0] * n,
                "split_type": [0] * n,
                "base_weights": [0.0] * n,
                "loss_changes": [0.0] * n,
                "sum_hessian": [1.0] * n,
                "tree_param": {
                    "num_deleted": "0",
                    "num_feature": "1",
                    "num_nodes": str(n),
                    "size_leaf_vector": "1",
                },
            }
        )
    model = doc["learner"]["gradient_booster"]["model"]
    model["trees"], model["tree_info"] = trees, [0] * n_trees
    model["iteration_indptr"] = list(range(n_trees + 1))
    model["gbtree_model_param"]["num_trees"] = str(n_trees)
    forest = compile_forest(doc)
    assert binned_layout(forest) is None
    booster = xgb.Booster(model_file=bytearray(json.dumps(doc).encode()))
    X = rng.normal(size=(64, 1)).astype(np.float32)
    ref = booster.predict(xgb.DMatrix(X), output_margin=True)
    np.testing.assert_array_equal(bits(predict(forest, X, device="cpu")), bits(ref))


def test_binary_model_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "model.ubj"
    _small_model().save_model(path)
    with pytest.raises(UnsupportedModelError, match="not XGBoost JSON"):
        compile_forest(path)


def test_accepts_sklearn_wrapper() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, X[:, 0] > 0)
    ref = clf.predict(X, output_margin=True)
    np.testing.assert_array_equal(bits(predict(compile_forest(clf), X)), bits(ref))
