"""The ledger: one row per (dataset, ds, stage, run) saying what that stage did."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pandas as pd
import pyarrow as pa
from prefect import task

from tasks.lake import Lake

STAGES = ("ingest", "validate", "train", "score", "monitor", "pipeline")

LEDGER_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("ds", pa.string()),
        ("stage", pa.string()),
        ("run_id", pa.string()),
        ("status", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("rows_in", pa.int64()),
        ("rows_out", pa.int64()),
        ("rows_diverted", pa.int64()),
        ("files", pa.string()),
        ("delta_versions", pa.string()),
        ("model_version", pa.string()),
        ("report", pa.string()),
        ("verdict", pa.string()),
        ("error", pa.string()),
        ("details", pa.string()),
    ]
)


@dataclass
class LedgerEntry:
    """What one stage run did. `files`, `delta_versions` and `details` are stored as JSON.

    `rows_diverted` counts rows sent aside: rejects at ingest, quarantine at validate.
    """

    dataset: str
    ds: str
    stage: str
    run_id: str
    status: str = "succeeded"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    rows_diverted: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    delta_versions: dict[str, int] = field(default_factory=dict)
    model_version: str | None = None
    report: str | None = None
    verdict: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["finished_at"] = self.finished_at or datetime.now(UTC)
        for name in ("files", "delta_versions", "details"):
            row[name] = json.dumps(row[name], sort_keys=True, default=str)
        return row


def record_entry(lake: Lake, entry: LedgerEntry) -> int:
    """Append `entry` to the ledger; returns the ledger version."""
    if entry.stage not in STAGES:
        raise ValueError(f"unknown stage {entry.stage!r}")
    data = pa.Table.from_pylist([entry.to_row()], schema=LEDGER_SCHEMA)
    return lake.append("ledger", None, data, run_id=entry.run_id)


@task(retries=2, retry_delay_seconds=1)
def record_ledger(lake: Lake, entry: LedgerEntry) -> int:
    return record_entry(lake, entry)


def read_ledger(lake: Lake, dataset: str, ds: str | None = None) -> pd.DataFrame:
    """Every ledger row of `dataset` (and `ds`), oldest first, JSON columns decoded."""
    where = {"dataset": dataset} | ({"ds": ds} if ds is not None else {})
    table = lake.read("ledger", where=where)
    if table.num_rows == 0:
        return pd.DataFrame(columns=LEDGER_SCHEMA.names)
    frame = table.to_pandas().sort_values("finished_at", kind="stable").reset_index(drop=True)
    for name in ("files", "delta_versions", "details"):
        frame[name] = frame[name].map(lambda text: json.loads(text) if text else None)
    return frame


def latest_runs(lake: Lake, dataset: str) -> pd.DataFrame:
    """The most recent row of each (ds, stage) of `dataset`."""
    frame = read_ledger(lake, dataset)
    if frame.empty:
        return frame
    return frame.groupby(["ds", "stage"], as_index=False).tail(1).reset_index(drop=True)


def last_succeeded(lake: Lake, dataset: str, ds: str, stage: str) -> dict[str, Any] | None:
    """The latest succeeded run of `stage` for (dataset, ds), as a dict, or None."""
    frame = read_ledger(lake, dataset, ds)
    frame = frame[(frame["stage"] == stage) & (frame["status"] == "succeeded")]
    return None if frame.empty else frame.iloc[-1].to_dict()


@contextmanager
def ledger_stage(lake: Lake, dataset: str, ds: str, stage: str, run_id: str):
    """Yields the stage's `LedgerEntry` to fill in; records it when the stage ends,
    as failed (with the error) if the stage raised."""
    entry = LedgerEntry(dataset=dataset, ds=ds, stage=stage, run_id=run_id)
    try:
        yield entry
    except BaseException as error:
        entry.status = "failed"
        entry.error = f"{type(error).__name__}: {error}"[:2000]
        record_ledger(lake, entry)
        raise
    record_ledger(lake, entry)


def _stage_value(stages: dict[str, dict], name: str, column: str) -> Any:
    row = stages.get(name)
    return None if row is None or pd.isna(row[column]) else row[column]


def day_status(lake: Lake, dataset: str) -> list[dict[str, Any]]:
    """Per day of `dataset`: row counts and the latest status of each stage, the champion's
    verdict and report, as the ledger records them."""
    latest = latest_runs(lake, dataset)
    days = []
    for ds, runs in latest.groupby("ds", sort=True):
        stage = {row["stage"]: row for row in runs.to_dict("records")}
        value = partial(_stage_value, stage)
        days.append(
            {
                "ds": ds,
                "landed": value("ingest", "rows_in"),
                "bronze": value("ingest", "rows_out"),
                "rejected": value("ingest", "rows_diverted"),
                "silver": value("validate", "rows_out"),
                "quarantined": value("validate", "rows_diverted"),
                "scored": value("score", "rows_out"),
                "model": value("score", "model_version"),
                "verdict": value("monitor", "verdict"),
                "report": value("monitor", "report"),
                "stages": {name: stage[name]["status"] for name in STAGES if name in stage},
                "errors": {n: r["error"] for n, r in stage.items() if r["status"] == "failed"},
            }
        )
    return days
