"""Retraining: the window a retrain trains on, the newest rows it holds out, the champion
and the candidate scored on those same rows, and what earlier retrains of a window decided."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from datasets import Dataset, labels_of
from tasks import step
from tasks.features import FeatureSpec, feature_matrix
from tasks.lake import Lake
from tasks.ledger import read_ledger, succeeded_days

HOLDOUT_FRACTION = 0.2


def training_window(lake: Lake, dataset: str, ds: str, days: int) -> list[str]:
    """The last `days` validated days of `dataset` up to `ds` (inclusive), oldest first."""
    validated = [day for day in succeeded_days(lake, dataset, "validate") if day <= ds]
    return validated[-days:]


def window_key(days: list[str]) -> str:
    """The name of a training window: one retrain per (dataset, window)."""
    return f"{days[0]}..{days[-1]}" if days else "-"


def newest_holdout(frame: pd.DataFrame, target: str, fraction: float = HOLDOUT_FRACTION):
    """A boolean mask over `frame`'s rows: the newest `fraction` of its labelled rows (by
    day, then row id), the rows a retrained model is judged on against the champion."""
    labelled = np.flatnonzero(frame[target].notna().to_numpy())
    if len(labelled) == 0:
        return np.zeros(len(frame), dtype=bool)
    keys = frame.iloc[labelled][["ds", "_row_id"]].astype(str)
    order = labelled[np.lexsort((keys["_row_id"].to_numpy(), keys["ds"].to_numpy()))]
    count = max(1, round(fraction * len(labelled)))
    mask = np.zeros(len(frame), dtype=bool)
    mask[order[-count:]] = True
    return mask


def predict(model_json: bytes, spec: FeatureSpec, frame: pd.DataFrame) -> np.ndarray:
    """XGBoost's own probabilities for `frame`, from the model's JSON bytes (never pickle)."""
    import xgboost as xgb  # with scikit-learn, seconds to import: not for every monitor

    booster = xgb.Booster()
    booster.load_model(bytearray(model_json))
    matrix = xgb.DMatrix(feature_matrix(frame, spec), feature_names=list(spec.names))
    return booster.predict(matrix)


def evaluation_frame(rows: pd.DataFrame, dataset: Dataset, scores: np.ndarray) -> pd.DataFrame:
    """`rows` with a model's `score`, their `label` (1.0 / 0.0) and the protected attributes
    (derived ones added): what quality and fairness are computed on."""
    frame = dataset.derive_protected(rows.reset_index(drop=True))
    frame["score"] = np.asarray(scores, dtype="float64")
    frame["label"] = labels_of(frame, dataset.roles).astype("float64")
    return frame


@step
def score_holdout(
    holdout: pd.DataFrame, dataset: Dataset, model_json: bytes, spec: FeatureSpec
) -> pd.DataFrame:
    """The held-out rows scored by one model, ready to evaluate."""
    return evaluation_frame(holdout, dataset, predict(model_json, spec, holdout))


def decided_retrain(lake: Lake, dataset: str, window: str) -> dict[str, Any] | None:
    """The ledger row of the retrain that already decided on `window` (registered a
    challenger or rejected its candidate), or None."""
    ledger = read_ledger(lake, dataset)
    if ledger.empty:
        return None
    done = ledger[(ledger["stage"] == "retrain") & (ledger["status"] == "succeeded")]
    for row in reversed(done.to_dict("records")):
        if (row["details"] or {}).get("window") == window:
            return row
    return None


def evaluation_metrics(role: str, evaluation) -> dict[str, float]:
    """An `Evaluation` as flat MLflow metrics named `{role}.{metric}` and
    `{role}.{disparity}.{grouping}` (names MLflow accepts: no `×`)."""
    metrics = {f"{role}.{name}": float(value) for name, value in evaluation.quality.items()}
    if evaluation.fairness is not None:
        for d in evaluation.fairness.disparities:
            if d.value is not None:
                grouping = "_x_".join(d.attributes)
                metrics[f"{role}.{d.metric}.{grouping}"] = float(d.value)
    return metrics
