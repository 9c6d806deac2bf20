"""Training an XGBoost classifier on typed silver rows, with a holdout evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from datasets import FeatureRoles
from tasks import step
from tasks.features import FeatureSpec, feature_matrix, learn_feature_spec
from tasks.lake import Lake
from tasks.model_store import ModelCard, ModelStore

DEFAULT_PARAMS = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.1,
    "subsample": 0.9,
    "eval_metric": "logloss",
    "nthread": 2,
}
DEFAULT_ROUNDS = 200
REFERENCE_ROWS = 50_000


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster
    spec: FeatureSpec
    metrics: dict[str, float]
    reference: pd.DataFrame
    params: dict

    def model_json(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="json"))


def labels_of(frame: pd.DataFrame, roles: FeatureRoles) -> np.ndarray:
    return (frame[roles.target] == roles.positive_label).to_numpy(dtype=np.float32)


def train_classifier(
    frame: pd.DataFrame,
    roles: FeatureRoles,
    *,
    rounds: int = DEFAULT_ROUNDS,
    params: dict | None = None,
    seed: int = 0,
) -> TrainedModel:
    """A booster trained on labelled rows of `frame`, evaluated on a seeded 20% holdout.

    The reference window is a sample of the training rows with the model's score.
    """
    labelled = frame[frame[roles.target].notna()].reset_index(drop=True)
    if labelled[roles.target].nunique() < 2:
        raise ValueError(
            f"need both classes of {roles.target!r} to train; got {len(labelled)} rows"
        )
    spec = learn_feature_spec(labelled, roles.numeric, roles.categorical)
    X = feature_matrix(labelled, spec)
    y = labels_of(labelled, roles)
    rng = np.random.default_rng(seed)
    holdout = rng.random(len(labelled)) < 0.2
    params = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
    train = xgb.DMatrix(X[~holdout], label=y[~holdout], feature_names=list(spec.names))
    booster = xgb.train(params, train, num_boost_round=rounds)
    scores = booster.predict(xgb.DMatrix(X, feature_names=list(spec.names)))
    metrics = _holdout_metrics(y[holdout], scores[holdout])
    reference = labelled[list(spec.names)].copy()
    reference["score"] = scores
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(REFERENCE_ROWS, random_state=seed)
    return TrainedModel(booster, spec, metrics, reference.reset_index(drop=True), params)


def _holdout_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    if len(y) == 0 or len(np.unique(y)) < 2:
        return {"holdout_rows": float(len(y))}
    return {
        "auc": float(roc_auc_score(y, scores)),
        "accuracy": float(accuracy_score(y, scores >= 0.5)),
        "logloss": float(log_loss(y, scores, labels=[0, 1])),
        "holdout_rows": float(len(y)),
    }


@step(retries=2)
def read_training_window(lake: Lake, dataset: str, days: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Silver rows of `days`, read at one pinned table version (returned for lineage)."""
    table = lake.table("silver", dataset)
    if table is None:
        raise LookupError(f"no silver data for {dataset} yet: ingest and validate first")
    version = table.version()
    frames = [lake.read("silver", dataset, where={"ds": day}, version=version) for day in days]
    frame = pa.concat_tables(frames).to_pandas() if frames else pd.DataFrame()
    return frame, version


@step
def fit_model(frame: pd.DataFrame, roles: FeatureRoles, seed: int = 0) -> TrainedModel:
    return train_classifier(frame, roles, seed=seed)


@step(retries=2)
def register_model(
    store: ModelStore,
    dataset: str,
    roles: FeatureRoles,
    trained: TrainedModel,
    trained_on: dict,
    promote: bool,
) -> ModelCard:
    """Store the trained model as a new version; name it champion when `promote`."""
    card = store.save(
        {
            "dataset": dataset,
            "created_at": datetime.now(UTC).isoformat(),
            "objective": trained.params["objective"],
            "features": trained.spec.to_json(),
            "target": roles.target,
            "positive_label": roles.positive_label,
            "trained_on": trained_on,
            "metrics": trained.metrics,
            "params": trained.params,
        },
        trained.model_json(),
        trained.reference,
    )
    if promote:
        store.set_alias(dataset, "champion", card.version)
    return card
