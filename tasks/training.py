"""Training an XGBoost classifier on typed silver rows, with a holdout evaluation.

XGBoost and scikit-learn (about 2 s to import) are imported where a model is trained or
judged: the daily pipeline imports this module for the day it must train, not every day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from datasets import FeatureRoles, labels_of
from reports.profile import ReferenceProfile
from tasks import step
from tasks.features import FeatureSpec, feature_matrix, learn_feature_spec
from tasks.lake import Lake
from tasks.profiles import build_profile

if TYPE_CHECKING:
    import xgboost as xgb
from tasks.registry import ModelCard, ModelRegistry

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
    holdout_labels: np.ndarray
    holdout_scores: np.ndarray
    profile: ReferenceProfile | None = None

    def model_json(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="json"))


class ModelRefused(ValueError):
    """A trained model failed a sanity gate and is not registered."""


def text_like_columns(frame: pd.DataFrame, roles: FeatureRoles) -> list[str]:
    """Categorical features whose values are nearly all distinct: free text or ids, which
    no model generalises over and every drift test flags; they belong in `roles.text` or
    `roles.identifiers`."""
    suspects = []
    for name in roles.categorical:
        values = frame[name].dropna()
        if len(values) >= 200 and values.nunique() > 0.5 * len(values):
            suspects.append(name)
    return suspects


def check_model_sanity(y: np.ndarray, holdout_scores: np.ndarray, min_auc: float) -> None:
    """Refuse a model that cannot be useful: the holdout must have both classes, the scores
    must vary, and the holdout AUC must reach `min_auc`."""
    if len(np.unique(y)) < 2:
        raise ModelRefused(f"the holdout has one class only ({len(y)} rows): no AUC to judge")
    if float(np.ptp(holdout_scores)) < 1e-6:
        raise ModelRefused("the model scores every holdout row the same")
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, holdout_scores))
    if auc < min_auc:
        raise ModelRefused(f"holdout AUC {auc:.3f} is below the floor {min_auc:.3f}")


def train_classifier(
    frame: pd.DataFrame,
    roles: FeatureRoles,
    *,
    rounds: int = DEFAULT_ROUNDS,
    params: dict | None = None,
    seed: int = 0,
    holdout: np.ndarray | None = None,
    dask_address: str | None = None,
) -> TrainedModel:
    """A booster trained on labelled rows of `frame`, evaluated on a seeded 20% holdout, or
    on the rows of `frame` that the boolean mask `holdout` marks (a retraining holds out the
    newest rows, so that its reference is the newest data it saw). With `dask_address` the
    boosting runs on that Dask cluster's workers (`xgboost.dask`), the rows split among them.

    The reference window drift is measured against is the holdout with the model's score:
    out-of-sample, so an unseen day from the same population does not look drifted. It
    carries the labels and protected attributes too: the fairness baseline of the model.
    The reference profile of full-data drift takes its bin edges from the training rows
    (score edges from the holdout scores) and its reference counts from the holdout rows.
    """
    has_label = frame[roles.target].notna().to_numpy()
    labelled = frame[has_label].reset_index(drop=True)
    y = labels_of(labelled, roles)
    if len(np.unique(y)) < 2:
        seen = ", ".join(map(repr, labelled[roles.target].drop_duplicates().head(5).tolist()))
        raise ModelRefused(
            f"need both classes of {roles.target!r} to train: positive label "
            f"{roles.positive_label!r} matches {int(y.sum())} of {len(y)} labelled rows "
            f"(values seen: {seen or 'none'})"
        )
    spec = learn_feature_spec(labelled, roles.numeric, roles.categorical)
    X = feature_matrix(labelled, spec)
    if holdout is None:
        holdout = np.random.default_rng(seed).random(len(labelled)) < 0.2
    else:
        holdout = np.asarray(holdout, dtype=bool)[has_label]
    params = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
    booster = _boost(params, X[~holdout], y[~holdout], list(spec.names), rounds, dask_address)
    import xgboost as xgb

    scores = booster.predict(xgb.DMatrix(X, feature_names=list(spec.names)))
    metrics = _holdout_metrics(y[holdout], scores[holdout])
    protected = [c for c in roles.protected if c in labelled.columns and c not in spec.names]
    reference = labelled.loc[holdout, [*spec.names, *protected]].copy()
    reference["score"] = scores[holdout]
    reference["label"] = y[holdout]
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(REFERENCE_ROWS, random_state=seed)
    return TrainedModel(
        booster,
        spec,
        metrics,
        reference.reset_index(drop=True),
        params,
        holdout_labels=y[holdout],
        holdout_scores=scores[holdout],
        profile=build_profile(spec, X[~holdout], X[holdout], scores[holdout]),
    )


def _boost(
    params: dict, X: np.ndarray, y: np.ndarray, names: list[str], rounds: int, dask_address
) -> xgb.Booster:
    import xgboost as xgb

    if dask_address is None:
        train = xgb.DMatrix(X, label=y, feature_names=names)
        return xgb.train(params, train, num_boost_round=rounds)
    import dask.array as da
    from distributed import Client
    from xgboost import dask as dxgb

    with Client(dask_address) as client:
        workers = max(1, len(client.scheduler_info()["workers"]))
        rows = max(1, -(-len(X) // workers))
        train = dxgb.DaskDMatrix(
            client,
            da.from_array(X, chunks=(rows, X.shape[1])),
            da.from_array(y, chunks=rows),
            feature_names=names,
        )
        return dxgb.train(client, params, train, num_boost_round=rounds)["booster"]


def _holdout_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    if len(y) == 0 or len(np.unique(y)) < 2:
        return {"holdout_rows": float(len(y))}
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

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
def fit_model(
    frame: pd.DataFrame,
    roles: FeatureRoles,
    min_auc: float,
    seed: int = 0,
    holdout: np.ndarray | None = None,
    dask_address: str | None = None,
) -> TrainedModel:
    """Train (on the Dask cluster at `dask_address` when given), then refuse
    (`ModelRefused`) a model that fails a sanity gate."""
    trained = train_classifier(frame, roles, seed=seed, holdout=holdout, dask_address=dask_address)
    check_model_sanity(trained.holdout_labels, trained.holdout_scores, min_auc)
    return trained


def model_card_fields(
    dataset: str, roles: FeatureRoles, trained: TrainedModel, trained_on: dict
) -> dict:
    """What the model card of a trained model says (its version and checksum aside)."""
    return {
        "dataset": dataset,
        "created_at": datetime.now(UTC).isoformat(),
        "objective": trained.params["objective"],
        "features": trained.spec.to_json(),
        "target": roles.target,
        "positive_label": roles.positive_label,
        "trained_on": trained_on,
        "metrics": trained.metrics,
        "params": trained.params,
    }


@step  # no retries: a retry after the version was created would register a second one
def register_model(
    registry: ModelRegistry,
    dataset: str,
    roles: FeatureRoles,
    trained: TrainedModel,
    trained_on: dict,
    promote: bool,
) -> ModelCard:
    """Log the training and register it as a new version; name it champion when `promote`."""
    card = registry.register_model(
        model_card_fields(dataset, roles, trained, trained_on),
        trained.model_json(),
        trained.reference,
        profile=trained.profile,
    )
    if promote:
        registry.set_alias(dataset, "champion", card.version)
    return card
