"""The reference profile built at training and stored with the model; histograms counted in
the scoring pass, merged per day into the `histograms` table, idempotently."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from datasets import get_dataset
from kernels.histogram import histogram, quantile_edges
from reports.profile import HistogramDriftThresholds, profile_drift
from tasks.features import feature_matrix
from tasks.lake import Lake
from tasks.profiles import (
    HISTOGRAMS_SCHEMA,
    TAIL_QUANTILES,
    load_day_histograms,
    numeric_edges,
)
from tasks.registry import ModelRegistry
from tasks.scoring import ModelRef, ShardScores, commit_histograms, score_and_profile_rows
from tasks.training import register_model, train_classifier

ADULT = get_dataset("adult")
DS = "2024-03-01"


@pytest.fixture(scope="module")
def trained():
    return train_classifier(ADULT.synthesize(20_000, seed=0), ADULT.roles, rounds=20)


@pytest.fixture
def store(registry, trained) -> ModelRegistry:
    register_model.fn(registry, "adult", ADULT.roles, trained, {"ds": [DS]}, promote=True)
    return registry


def test_the_profile_covers_the_model_inputs_then_the_score(trained):
    profile = trained.profile
    assert profile.feature_names == trained.spec.names
    assert profile.score.name == "score" and profile.score.kind == "score"
    assert profile.reference_rows == len(trained.holdout_scores)
    for column in profile.columns:
        assert column.reference.sum() == profile.reference_rows
    sex = profile.column("sex")
    assert sex.kind == "categorical" and sex.labels == trained.spec.vocabulary["sex"]
    assert sex.reference.size == len(sex.labels) + 1  # codes + unknown/missing
    # capital gain is mostly 0: the zeros get a bin of their own, the tail its quantiles
    gain = profile.column("capital_gain")
    assert gain.edges[0] == 0 and gain.edges.size > 5
    assert 0.8 < gain.reference[1] / profile.reference_rows < 0.99


def test_numeric_edges_give_a_point_mass_its_own_bin():
    rng = np.random.default_rng(0)
    smooth = rng.normal(size=10_000).astype(np.float32)
    deciles = quantile_edges(smooth.reshape(-1, 1), 10)[0]
    tails = np.quantile(smooth.astype(np.float64), TAIL_QUANTILES).astype(np.float32)
    np.testing.assert_array_equal(numeric_edges(smooth, 10), np.union1d(deciles, tails))
    spiky = np.where(rng.random(10_000) < 0.9, 0.0, rng.exponential(100, 10_000))
    spiky = np.append(spiky, [np.nan, np.inf]).astype(np.float32)
    edges = numeric_edges(spiky, 10)
    counts = histogram(spiky.reshape(-1, 1), [edges], device="cpu")[0]
    assert counts[1] == (spiky == 0).sum()  # [0, 0+) holds exactly the zeros
    assert np.count_nonzero(counts[2:-1]) >= 9  # the tail keeps its resolution
    assert numeric_edges(np.array([np.nan], np.float32), 10).size == 0


def test_the_profile_is_stored_with_the_model(store, trained):
    assert store.profile("adult", "v1") == trained.profile
    old = store.register_model(
        {
            "dataset": "adult",
            "created_at": "2024-01-01",
            "objective": "binary:logistic",
            "features": trained.spec.to_json(),
            "target": "income",
            "positive_label": ">50K",
        },
        trained.model_json(),
        trained.reference,
    )
    assert store.profile("adult", old.version) is None  # a model stored without one


@pytest.mark.parametrize("batch_rows", [97, 777, 4096, 1 << 20])
def test_histograms_of_the_scoring_pass_equal_one_histogram_of_the_day(store, batch_rows):
    frame = ADULT.synthesize(3_000, seed=1)
    frame["_row_id"] = [f"r{i}" for i in range(len(frame))]
    rows = pa.Table.from_pandas(frame, preserve_index=False)
    model = ModelRef.resolve(store, "adult", "v1", "champion")
    outputs, _, _, counts = score_and_profile_rows(
        rows, [model], DS, "run", device="cpu", batch_rows=batch_rows
    )
    profile = store.profile("adult", "v1")
    X = feature_matrix(frame, store.card("adult", "v1").feature_spec)
    features = histogram(X, profile.feature_edges(), device="cpu")
    scores = outputs["v1"].column("score").to_numpy().reshape(-1, 1)
    score_counts = histogram(scores, [profile.score.edges], device="cpu")[0]
    day = counts["v1"]
    assert list(day) == [c.name for c in profile.columns]
    for j, column in enumerate(profile.features):
        n = column.edges.size
        np.testing.assert_array_equal(day[column.name][:-1], features[j, : n + 1])
        assert day[column.name][-1] == features[j, -1]
        assert day[column.name].sum() == len(frame)
    n = profile.score.edges.size
    np.testing.assert_array_equal(day["score"][:-1], score_counts[: n + 1])


def test_a_clean_unseen_day_is_clean_and_planted_drift_is_flagged(store):
    model = ModelRef.resolve(store, "adult", "v1", "champion")
    profile = store.profile("adult", "v1")

    def day(drift: float, seed: int) -> dict[str, np.ndarray]:
        frame = ADULT.synthesize(30_000, drift=drift, seed=seed)
        frame["_row_id"] = [f"r{i}" for i in range(len(frame))]
        rows = pa.Table.from_pandas(frame, preserve_index=False)
        return score_and_profile_rows(rows, [model], DS, "run", device="cpu")[3]["v1"]

    clean_day = day(0.0, 7)
    clean = profile_drift(profile, clean_day)
    assert not clean.drifted, [(c.column, round(c.value, 3)) for c in clean.columns]
    assert not profile_drift(profile, clean_day, HistogramDriftThresholds(numeric="psi")).drifted
    planted = profile_drift(profile, day(1.0, 8))
    flagged = {c.column for c in planted.drifted}
    assert {"age", "workclass", "score"} <= flagged, planted.columns
    assert planted.current_rows == 30_000
    assert planted.column("age").method == "wasserstein"
    assert planted.column("age").threshold == HistogramDriftThresholds().wasserstein


def _shard(index: int, rows: int, counts: dict[str, np.ndarray] | None) -> ShardScores:
    return ShardScores(
        shard=index,
        rows=rows,
        seconds=0.1,
        device="cpu",
        worker="w",
        events=(),
        files={},
        histograms={"v1": counts} if counts is not None else {},
    )


def test_day_histograms_are_committed_once_per_slice_and_read_back(store, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    model = ModelRef.resolve(store, "adult", "v1", "champion")
    profile = store.profile("adult", "v1")
    parts = [
        {c.name: (i + 1) * c.reference for c in profile.columns}  # shard i: (i+1) x reference
        for i in range(3)
    ]
    results = [_shard(i, (i + 1) * profile.reference_rows, parts[i]) for i in range(3)]
    assert load_day_histograms.fn(lake, "adult", DS, "v1") is None
    first = commit_histograms.fn(lake, "adult", DS, [model], results, "run-a")
    assert set(first) == {"histograms@v1"}
    day = load_day_histograms.fn(lake, "adult", DS, "v1")
    assert list(day) == [c.name for c in profile.columns]
    for column in profile.columns:
        np.testing.assert_array_equal(day[column.name], 6 * column.reference)

    commit_histograms.fn(lake, "adult", DS, [model], results[::-1], "run-b")  # a re-run
    table = lake.read("histograms", "adult")
    assert table.num_rows == len(profile.columns) and set(table.column("_run_id")) == {
        pa.scalar("run-b")
    }
    assert table.schema.remove_metadata().equals(HISTOGRAMS_SCHEMA, check_metadata=False) or set(
        table.schema.names
    ) == set(HISTOGRAMS_SCHEMA.names)
    assert set(table.column("rows").to_pylist()) == {6 * profile.reference_rows}
    again = load_day_histograms.fn(lake, "adult", DS, "v1")
    assert all(np.array_equal(again[name], day[name]) for name in day)
    assert load_day_histograms.fn(lake, "adult", "2024-03-02", "v1") is None

    with pytest.raises(ValueError, match="two results for one shard"):
        commit_histograms.fn(lake, "adult", DS, [model], [*results, results[0]], "run-c")
    with pytest.raises(ValueError, match="do not count"):
        wrong = [_shard(0, 1, parts[0])]
        commit_histograms.fn(lake, "adult", DS, [model], wrong, "run-c")


def test_models_without_a_profile_write_no_histograms(trained, registry, tmp_path):
    store = registry
    store.register_model(
        {
            "dataset": "adult",
            "created_at": "2024-01-01",
            "objective": "binary:logistic",
            "features": trained.spec.to_json(),
            "target": "income",
            "positive_label": ">50K",
        },
        trained.model_json(),
        trained.reference,
    )
    lake = Lake(str(tmp_path / "lake"))
    model = ModelRef.resolve(store, "adult", "v1", "champion")
    assert commit_histograms.fn(lake, "adult", DS, [model], [_shard(0, 10, None)], "r") == {}
    assert lake.table("histograms", "adult") is None
