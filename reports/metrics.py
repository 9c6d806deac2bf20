"""Drift results as rows of the long-format `lake/metrics` table."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from reports.policy import Decision
from reports.result import DriftResult

METRIC_KEYS = (
    "dataset",
    "ds",
    "model_version",
    "metric",
    "column",
    "group",
    "value",
    "threshold",
    "breached",
)
"""The keys of every metrics row, in table order."""

DRIFTED_SHARE = "drifted_share"


def drift_metric_rows(
    dataset: str,
    ds: date | str,
    model_version: str,
    result: DriftResult,
    decision: Decision,
) -> list[dict[str, Any]]:
    """One `drift:<method>` row per reported column plus the dataset-level `drifted_share` row.

    The dataset row holds the share of drifted feature columns against the policy's
    `retrain_share`. `ds` is written as an ISO date string; `group` is None for drift rows.
    """
    day = ds.isoformat() if isinstance(ds, date) else str(ds)

    def row(
        metric: str, column: str | None, value: float, threshold: float, breached: bool
    ) -> dict[str, Any]:
        return {
            "dataset": dataset,
            "ds": day,
            "model_version": model_version,
            "metric": metric,
            "column": column,
            "group": None,
            "value": float(value),
            "threshold": float(threshold),
            "breached": bool(breached),
        }

    rows = [
        row(f"drift:{c.method}", c.column, c.value, c.threshold, c.drifted) for c in result.columns
    ]
    share = decision.feature_drifted_share
    retrain_share = decision.policy.retrain_share
    rows.append(
        row(DRIFTED_SHARE, None, share, retrain_share, share > 0 and share >= retrain_share)
    )
    return rows


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` for `labels` (1 positive, 0 negative, both present): the
    Mann–Whitney statistic of the scores' midranks, tied scores counting half, as
    scikit-learn's `roc_auc_score` (which checks its input for a second a million rows)."""
    from scipy.stats import rankdata  # a second to import: not in every process that reports

    positive = labels == 1
    positives = int(positive.sum())
    negatives = len(labels) - positives
    midranks = rankdata(scores, method="average")
    mann_whitney = midranks[positive].sum() - positives * (positives + 1) / 2
    return float(mann_whitney / (positives * negatives))


def quality_metric_rows(
    dataset: str,
    ds: date | str,
    model_version: str,
    labels: np.ndarray,
    scores: np.ndarray,
) -> list[dict[str, Any]]:
    """The model's quality on the day's rows whose label is known (`labels` NaN where not):
    `quality:labelled_rows` always, AUC, log-loss, accuracy and calibration (mean score
    minus positive rate) when the labelled rows hold both classes. No threshold: quality is
    judged against the champion by the retraining gate."""
    day = ds.isoformat() if isinstance(ds, date) else str(ds)
    known = ~np.isnan(labels)
    y, p = labels[known], scores[known]
    values = {"labelled_rows": float(known.sum())}
    if len(np.unique(y)) == 2:
        clipped = np.clip(p, 1e-7, 1 - 1e-7)
        values |= {
            "auc": roc_auc(y, p),
            "logloss": float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))),
            "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
            "calibration_gap": float(p.mean() - y.mean()),
        }
    return [
        {
            "dataset": dataset,
            "ds": day,
            "model_version": model_version,
            "metric": f"quality:{name}",
            "column": None,
            "group": None,
            "value": value,
            "threshold": None,
            "breached": False,
        }
        for name, value in values.items()
    ]
