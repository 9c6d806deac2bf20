"""Reading drift results out of an evidently 0.7 snapshot's `dict()`.

The snapshot holds one `DriftedColumnsCount` metric (value `{"count", "share"}`) and one
`ValueDrift` metric per column (config `column`/`method`/`threshold`, value the drift score),
plus, when the report includes tests, one test per metric whose status is evidently's verdict
(`FAIL` = drifted) linked to the metric by `metric_config.metric_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from reports.result import ColumnDrift

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS = "evidently:metric_v2:DriftedColumnsCount"

# The snapshot names a stattest by its display name; the short names are what evidently's
# options (`method="wasserstein"`) accept, so those are what we report.
_STATTEST_NAMES = {
    "Anderson-Darling": "anderson",
    "chi-square p_value": "chisquare",
    "Cramer-von Mises": "cramer_von_mises",
    "Energy-distance": "ed",
    "Epps-Singleton": "es",
    "Fisher's Exact test": "fisher_exact",
    "g_test": "g_test",
    "Hellinger distance": "hellinger",
    "Jensen-Shannon distance": "jensenshannon",
    "Kullback-Leibler divergence": "kl_div",
    "K-S p_value": "ks",
    "Mann-Whitney U-rank test": "mannw",
    "empirical_mmd": "empirical_mmd",
    "PSI": "psi",
    "t_test": "t_test",
    "Percentile text content drift": "perc_text_content_drift",
    "Absolute text content drift": "abs_text_content_drift",
    "Total-Variation-Distance": "TVD",
    "Wasserstein distance (normed)": "wasserstein",
    "Z-test p_value": "z",
}


@dataclass(frozen=True)
class SnapshotDrift:
    """What a drift snapshot says, without the row counts it was computed on."""

    columns: tuple[ColumnDrift, ...]
    drifted_share: float
    dataset_drift: bool


def stattest_name(display_name: str) -> str:
    """Evidently's short stattest name for a display name; unknown names pass through."""
    return _STATTEST_NAMES.get(display_name, display_name)


def parse_drift_snapshot(payload: Mapping[str, Any]) -> SnapshotDrift:
    """The per-column and dataset-level drift recorded in an evidently snapshot `dict()`.

    The snapshot must come from a report run with `include_tests=True` (evidently's drift
    verdicts live in the tests); a ValueError says what is missing otherwise.
    """
    statuses = _test_statuses(payload.get("tests") or [])
    columns: list[ColumnDrift] = []
    share: float | None = None
    dataset_drift: bool | None = None
    for metric in payload.get("metrics") or []:
        config = metric.get("config") or {}
        kind = config.get("type")
        if kind == _VALUE_DRIFT:
            column = str(config["column"])
            status = statuses.get(metric["id"])
            if status is None:
                raise ValueError(f"snapshot has no drift test for column {column!r}")
            columns.append(
                ColumnDrift(
                    column=column,
                    method=stattest_name(str(config["method"])),
                    value=float(metric["value"]),
                    threshold=float(config["threshold"]),
                    drifted=status == "FAIL",
                )
            )
        elif kind == _DRIFTED_COLUMNS:
            share = float(metric["value"]["share"])
            status = statuses.get(metric["id"])
            if status is None:
                raise ValueError("snapshot has no test for the share of drifted columns")
            dataset_drift = status == "FAIL"
    if share is None or dataset_drift is None:
        raise ValueError("snapshot has no DriftedColumnsCount metric")
    return SnapshotDrift(columns=tuple(columns), drifted_share=share, dataset_drift=dataset_drift)


def _test_statuses(tests: list[Mapping[str, Any]]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for test in tests:
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id is not None:
            status = test["status"]
            # `dict()` holds evidently's TestStatus enum, `json()` its string value.
            statuses[metric_id] = str(status.value if isinstance(status, Enum) else status)
    return statuses
