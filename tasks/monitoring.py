"""Monitoring IO: the scored day to compare, saving reports, the long metrics table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa

from datasets import FeatureRoles
from reports import (
    Decision,
    DriftPolicy,
    DriftResult,
    build_drift_report,
    decide,
    render_html,
    render_json,
)
from tasks import step
from tasks.lake import Lake

METRICS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("ds", pa.string()),
        ("model_version", pa.string()),
        ("metric", pa.string()),
        ("column", pa.string()),
        ("group", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("breached", pa.bool_()),
        ("_run_id", pa.string()),
    ]
)


@step(retries=2)
def load_scored_day(
    lake: Lake, dataset: str, ds: str, features: Sequence[str], model_version: str
) -> pd.DataFrame:
    """The day's silver features with the model's score, one row per silver row."""
    silver = lake.read("silver", dataset, where={"ds": ds}, columns=["_row_id", *features])
    scores = lake.read(
        "predictions",
        dataset,
        where={"ds": ds, "model_version": model_version},
        columns=["_row_id", "score"],
    )
    if silver.num_rows == 0:
        return pd.DataFrame(columns=["_row_id", *features, "score"])
    return silver.join(scores, "_row_id").to_pandas()


@step
def assess_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    roles: FeatureRoles,
    policy: DriftPolicy,
    max_rows: int,
) -> tuple[DriftResult, Decision]:
    """Evidently drift of the features and score, and the policy's verdict on it."""
    result = build_drift_report(
        reference,
        current,
        numeric=roles.numeric,
        categorical=roles.categorical,
        score_column="score",
        max_rows=max_rows,
    )
    return result, decide(result, policy, score_column="score")


def report_folder(reports_uri: str, dataset: str, ds: str) -> str:
    return f"{reports_uri.rstrip('/')}/{dataset}/{ds}"


@step(retries=2)
def save_drift_report(
    reports_uri: str,
    dataset: str,
    ds: str,
    result: DriftResult,
    decision: Decision,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write `drift.html` and `drift.json` under `reports/{dataset}/{ds}/`; returns their URIs."""
    folder = report_folder(reports_uri, dataset, ds)
    fs, path = fsspec.core.url_to_fs(folder, **dict(storage_options or {}))
    fs.makedirs(path, exist_ok=True)
    written = {}
    for kind, text in (("html", render_html(result)), ("json", render_json(result, decision))):
        fs.pipe_file(f"{path}/drift.{kind}", text.encode())
        written[kind] = f"{folder}/drift.{kind}"
    return written


PRESIGNED_SECONDS = 7 * 24 * 3600


def report_url(
    reports_uri: str,
    report: str,
    base_url: str | None,
    storage_options: Mapping[str, str] | None = None,
) -> str | None:
    """A link an operator's browser can open: under `base_url` where the reports folder is
    served over HTTP, else a presigned URL where the store signs (S3), else None."""
    if base_url:
        relative = report.removeprefix(reports_uri.rstrip("/")).lstrip("/")
        return f"{base_url.rstrip('/')}/{relative}"
    fs, path = fsspec.core.url_to_fs(report, **dict(storage_options or {}))
    try:
        return fs.sign(path, expiration=PRESIGNED_SECONDS)
    except NotImplementedError:
        return None


@step(retries=2)
def write_metrics(
    lake: Lake,
    rows: Sequence[dict[str, Any]],
    dataset: str,
    ds: str,
    model_version: str,
    run_id: str,
) -> int:
    """Replace the (dataset, ds, model version) slice of the long metrics table."""
    table = pa.Table.from_pylist([row | {"_run_id": run_id} for row in rows], schema=METRICS_SCHEMA)
    return lake.replace_slice(
        "metrics",
        None,
        table,
        {"dataset": dataset, "ds": ds, "model_version": model_version},
        run_id=run_id,
        partition_by=("dataset", "ds"),
    )
