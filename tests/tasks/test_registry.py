"""The model registry on a real MLflow SQLite store in tmp_path: versions, cards, checksummed
loads, aliases, tags, lineage on the run, and concurrent registrations."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks.registry import ModelIntegrityError, ModelRegistry, StoredModel, checksum
from tasks.scoring import ModelRef, cached_forest, resolve_models

TRAINED_ON = {
    "table": "/lake/silver/adult",
    "version": 7,
    "ds": ["2024-01-01", "2024-01-02", "2024-01-03"],
    "labels": {"version": 4, "rows_labelled_by_feed": 10},
}


def tiny_model(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    X = rng.random((200, 3))
    y = (X[:, 0] > 0.5).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "seed": seed}, xgb.DMatrix(X, label=y), 3)
    return bytes(booster.save_raw(raw_format="json"))


def card_fields(dataset: str = "adult", **changes) -> dict:
    return {
        "dataset": dataset,
        "created_at": "2024-01-04T00:00:00+00:00",
        "objective": "binary:logistic",
        "features": {"numeric": ["a", "b", "c"], "categorical": [], "vocabulary": {}},
        "target": "income",
        "positive_label": ">50K",
        "trained_on": TRAINED_ON,
        "metrics": {"auc": 0.91, "holdout_rows": 40.0},
        "params": {"max_depth": 6, "eta": 0.1},
    } | changes


def test_register_then_read_back_the_same_bytes_and_card(registry):
    assert registry.versions("adult") == []
    model_json = tiny_model()
    reference = pd.DataFrame({"a": [0.1, 0.2], "score": [0.3, 0.4]})
    card = registry.register_model(card_fields(), model_json, reference)
    assert card.version == "v1" and registry.versions("adult") == ["v1"]
    assert card.checksum == checksum(model_json) and card.run_id
    assert card.trained_on == TRAINED_ON and card.metrics["auc"] == 0.91
    stored = registry.load("adult", "v1")
    assert isinstance(stored, StoredModel) and stored.model_json == model_json
    assert stored.card == registry.card("adult", "v1") == card
    pd.testing.assert_frame_equal(registry.reference("adult", "v1"), reference)
    assert registry.profile("adult", "v1") is None
    registry.register_model(card_fields(), tiny_model(1), reference)
    assert registry.versions("adult") == ["v1", "v2"]
    with pytest.raises(FileNotFoundError, match="adult v9"):
        registry.card("adult", "v9")
    with pytest.raises(FileNotFoundError):
        registry.load("bank", "v1")


def test_tampered_model_bytes_are_refused(registry):
    registry.register_model(card_fields(), tiny_model(), pd.DataFrame({"a": [1.0]}))
    path = Path(registry.locations("adult", "v1")["model_json"].removeprefix("file://"))
    path.write_bytes(path.read_bytes().replace(b'"num_trees"', b'"num_trees" ', 1))
    with pytest.raises(ModelIntegrityError, match="adult v1"):
        registry.load("adult", "v1")
    registry.set_alias("adult", "champion", "v1")
    (ref,) = resolve_models.fn(registry, "adult")
    with pytest.raises(ModelIntegrityError):
        cached_forest(ref)


def test_aliases_set_move_and_delete(registry):
    for seed in range(2):
        registry.register_model(card_fields(), tiny_model(seed), pd.DataFrame({"a": [1.0]}))
    assert registry.aliases("adult") == {} and registry.alias("adult", "champion") is None
    registry.set_alias("adult", "champion", "v1")
    registry.set_alias("adult", "challenger", "v2")
    assert registry.aliases("adult") == {"champion": "v1", "challenger": "v2"}
    refs = resolve_models.fn(registry, "adult")
    assert [(r.version, r.role) for r in refs] == [("v1", "champion"), ("v2", "challenger")]
    registry.delete_alias("adult", "challenger")
    registry.delete_alias("adult", "challenger")  # absent: no error
    assert registry.aliases("adult") == {"champion": "v1"}
    with pytest.raises(FileNotFoundError):
        registry.set_alias("adult", "champion", "v3")
    with pytest.raises(LookupError, match="no champion model for bank"):
        resolve_models.fn(registry, "bank")


def test_version_tags_and_find_versions(registry):
    other = {**TRAINED_ON, "ds": ["2024-02-01", "2024-02-02"], "version": 9}
    registry.register_model(card_fields(), tiny_model(0), pd.DataFrame({"a": [1.0]}))
    registry.register_model(
        card_fields(trained_on=other), tiny_model(1), pd.DataFrame({"a": [1.0]})
    )
    tags = registry.version_tags("adult", "v1")
    assert tags["tidewater.window"] == "2024-01-01..2024-01-03"
    assert tags["tidewater.silver_version"] == "7" and tags["tidewater.labels_version"] == "4"
    assert tags["tidewater.checksum"] == registry.card("adult", "v1").checksum
    window = {"tidewater.window": "2024-02-01..2024-02-02"}
    assert registry.find_versions("adult", window) == ["v2"]
    assert registry.find_versions("adult", **{"tidewater.silver_version": "7"}) == ["v1"]
    registry.set_version_tags("adult", "v1", {"tidewater.status": "retired"})
    assert registry.version_tags("adult", "v1")["tidewater.status"] == "retired"
    assert registry.find_versions("adult", {"tidewater.status": "retired"}) == ["v1"]
    assert registry.find_versions("bank", window) == []


def test_the_run_carries_params_metrics_lineage_and_no_pickle(registry):
    run = registry.log_training(
        card_fields(),
        tiny_model(),
        pd.DataFrame({"a": [1.0]}),
        None,
        metrics={"gate_auc_delta": 0.01},
        tags={"tidewater.kind": "candidate"},
    )
    assert run.model_uri.startswith("models:/m-") and run.dataset == "adult"
    registry.end_training(run, tags={"tidewater.gate": "rejected: bias"}, metrics={"x": 1.0})
    data = registry.client.get_run(run.run_id).data
    assert data.params == {"max_depth": "6", "eta": "0.1"}
    assert data.metrics == {"auc": 0.91, "holdout_rows": 40.0, "gate_auc_delta": 0.01, "x": 1.0}
    assert data.tags["tidewater.silver_version"] == "7"
    assert data.tags["tidewater.labels_version"] == "4"
    assert data.tags["tidewater.window"] == "2024-01-01..2024-01-03"
    assert data.tags["tidewater.checksum"] == run.checksum
    assert data.tags["tidewater.gate"] == "rejected: bias"
    experiment = registry.client.get_experiment_by_name("tidewater-adult")
    assert experiment.artifact_location.endswith("models/adult")
    assert registry.versions("adult") == []  # logged, not registered
    card = registry.register(run, tags={"tidewater.status": "challenger"})
    assert card.version == "v1" and card.tags["tidewater.status"] == "challenger"
    files = [p for p in Path(registry.artifact_root).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"model.json", "MLmodel", "card.json", "reference.parquet"} <= names
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib", ".cloudpickle")]
    mlmodel = next(p for p in files if p.name == "MLmodel").read_text()
    assert "model_format: json" in mlmodel and "pickle" not in mlmodel


def test_two_concurrent_registrations_get_two_versions(registry):
    registry.register_model(card_fields(), tiny_model(9), pd.DataFrame({"a": [1.0]}))
    errors, cards = [], []

    def register(seed: int) -> None:
        try:
            mine = ModelRegistry(registry.tracking_uri, registry.artifact_root)
            cards.append(
                mine.register_model(card_fields(), tiny_model(seed), pd.DataFrame({"a": [1.0]}))
            )
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(card.version for card in cards) == ["v2", "v3"]
    assert registry.versions("adult") == ["v1", "v2", "v3"]
    for card in cards:
        assert registry.load("adult", card.version).card.checksum == card.checksum


def test_workers_need_only_the_model_ref(registry):
    registry.register_model(card_fields(), tiny_model(), pd.DataFrame({"a": [1.0]}))
    ref = ModelRef.resolve(registry, "adult", "v1", "champion")
    assert ref.checksum == registry.card("adult", "v1").checksum
    assert not hasattr(ref, "registry") and "mlflow.db" not in repr(ref)
    card, forest = cached_forest(ref)
    assert card.version == "v1" and forest is not None


def test_an_existing_store_opens_in_the_background_a_new_one_is_left_to_its_first_use(
    registry, tmp_path
):
    from tasks.registry import _CLIENTS

    opening = registry.open_in_background()
    assert opening is not None
    opening.join(timeout=60)
    assert registry.tracking_uri in _CLIENTS  # the first lookup finds it open

    fresh = tmp_path / "fresh" / "mlflow.db"
    assert ModelRegistry(f"sqlite:///{fresh}", str(tmp_path / "m")).open_in_background() is None
    assert not fresh.exists()  # MLflow creates its tables where a run uses it, not meanwhile
