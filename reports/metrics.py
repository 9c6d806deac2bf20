"""Drift results as rows of the long-format `lake/metrics` table."""

from __future__ import annotations

from datetime import date
from typing import Any

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
