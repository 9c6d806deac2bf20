"""Evidently data-drift report over a model's features and score."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reports.parse import parse_drift_snapshot
from reports.result import DriftResult

MISSING = "(missing)"
"""The category a missing categorical value is reported as, so missingness can drift too."""


REPORT_LIBRARIES = ("evidently.metrics", "fairlearn.metrics")
"""What the monitor's worker tasks import: Evidently's first import is about 9 s of pure
Python (pydantic models built by the hundred), fairlearn's (scikit-learn, SciPy) about 2 s."""


def import_report_libraries_in_background() -> threading.Thread:
    """Import `REPORT_LIBRARIES` on a daemon thread: Dask workers do as they start, and a
    pipeline without a cluster for its reports while the day is scored, so that the monitor
    finds them imported."""

    def import_all() -> None:
        for name in REPORT_LIBRARIES:
            importlib.import_module(name)

    thread = threading.Thread(target=import_all, name="import-report-libraries", daemon=True)
    thread.start()
    return thread


def build_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    score_column: str | None = "score",
    drift_share: float = 0.5,
    max_rows: int | None = 100_000,
    seed: int = 0,
) -> DriftResult:
    """Drift of `numeric`, `categorical` and the numeric `score_column` from reference to current.

    Evidently picks each column's stattest and threshold. Each side is sampled down to at most
    `max_rows` rows (seeded). Missing categorical values count as the category `MISSING`;
    missing numeric values are left out of that column's test (evidently drops them).
    `drift_share` is the share of drifted columns at which evidently declares dataset drift.
    """
    # evidently takes ~9 s to import: only callers that build reports pay for it
    # (`import_report_libraries_in_background` overlaps it with other work)
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    numerical_columns = _numeric_columns(numeric, categorical, score_column)
    categorical_columns = list(dict.fromkeys(categorical))
    columns = numerical_columns + categorical_columns
    if not columns:
        raise ValueError("no columns to report drift on")
    ref = _prepare(reference, "reference", numerical_columns, categorical_columns, max_rows, seed)
    cur = _prepare(current, "current", numerical_columns, categorical_columns, max_rows, seed)

    definition = DataDefinition(
        numerical_columns=numerical_columns, categorical_columns=categorical_columns
    )
    # The metrics DataDriftPreset generates, without the preset: its page recomputes every
    # column's drift for a legacy table (measured here: 40% of the report's time).
    metrics = [DriftedColumnsCount(columns=columns, drift_share=drift_share)]
    report = Report(
        [*metrics, *(ValueDrift(column=column) for column in columns)], include_tests=True
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    parsed = parse_drift_snapshot(snapshot.dict())
    order = {name: i for i, name in enumerate(columns)}
    return DriftResult(
        columns=tuple(sorted(parsed.columns, key=lambda c: order[c.column])),
        drifted_share=parsed.drifted_share,
        dataset_drift=parsed.dataset_drift,
        reference_rows=len(ref),
        current_rows=len(cur),
        snapshot=snapshot,
    )


def drift_sample(frame: pd.DataFrame, max_rows: int | None, seed: int = 0) -> pd.DataFrame:
    """The rows of `frame` a drift report is computed on: at most `max_rows`, drawn seeded
    (a sample of the sample is itself)."""
    if max_rows is not None and len(frame) > max_rows:
        return frame.sample(n=max_rows, random_state=seed)
    return frame


def _numeric_columns(
    numeric: Sequence[str], categorical: Sequence[str], score_column: str | None
) -> list[str]:
    columns = list(dict.fromkeys(numeric))
    if score_column is not None and score_column not in columns:
        columns.append(score_column)
    both = set(columns) & set(categorical)
    if both:
        raise ValueError(f"columns both numeric and categorical: {sorted(both)}")
    return columns


def _prepare(
    frame: pd.DataFrame,
    side: str,
    numeric: list[str],
    categorical: list[str],
    max_rows: int | None,
    seed: int,
) -> pd.DataFrame:
    missing = [c for c in numeric + categorical if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} data lacks columns {missing}")
    if frame.empty:
        raise ValueError(f"{side} data has no rows")
    frame = drift_sample(frame, max_rows, seed)
    prepared = {c: _as_float(frame[c], c, side) for c in numeric}
    prepared |= {c: _as_category(frame[c]) for c in categorical}
    return pd.DataFrame(prepared, index=pd.RangeIndex(len(frame)))


def _as_float(values: pd.Series, column: str, side: str) -> np.ndarray:
    # Nullable dtypes (Int64, Float64, boolean) carry pd.NA, which evidently's stattests
    # cannot take; plain float64 with NaN they drop.
    floats = pd.to_numeric(values).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    if np.isnan(floats).all():
        raise ValueError(f"numeric column {column!r} has no values in the {side} data")
    return floats


def _as_category(values: pd.Series) -> np.ndarray:
    labels = values.astype(object).where(values.notna(), MISSING)
    return labels.map(str).to_numpy(dtype=object)
