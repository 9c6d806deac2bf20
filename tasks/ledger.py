"""The ledger: one row per (dataset, ds, stage, run) saying what that stage did."""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd
import pyarrow as pa

from tasks.lake import Lake
from tasks.metering import StageMeter

STAGES = (
    "ingest",
    "validate",
    "labels",
    "train",
    "score",
    "monitor",
    "shadow",
    "retrain",
    "promote",
    "retire",
    "rollback",
    "replay",
    "pipeline",
    "backfill",
)

# Stages of a range of days, not of one: recorded under the range's first day, and never
# part of that day's status.
RANGE_STAGES = ("backfill",)

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
        ("wall_seconds", pa.float64()),
        ("cpu_seconds", pa.float64()),
        ("gpu_seconds", pa.float64()),
        ("peak_memory_bytes", pa.int64()),
    ]
)

# How a stage run ended: `interrupted` when a signal stopped it; `crashed` and `cancelled`
# are recorded by Prefect state hooks when its process died or an operator cancelled it.
FINAL_STATUSES = ("succeeded", "failed", "interrupted", "crashed", "cancelled")
# A stage records `started` when it begins. Read back, a stage whose latest row is
# `started` is `running` while its process lives, and `crashed` once it is gone (on this
# host: its pid; elsewhere: started longer than STALE_AFTER ago).
STARTED = "started"
COMPACT_EVERY = 32  # ledger appends between two compactions of its files
STALE_AFTER = timedelta(hours=6)


def process_alive(host: str | None, pid: int | None) -> bool | None:
    """Whether process `pid` of `host` lives; None when `host` is not this one."""
    if host != socket.gethostname() or pid is None:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@dataclass
class LedgerEntry:
    """What one stage run did. `files`, `delta_versions` and `details` are stored as JSON.

    `rows_diverted` counts rows sent aside: rejects at ingest, quarantine at validate.
    Resource use: wall and CPU seconds and peak memory of the process that ran the stage,
    plus (for scoring) the CPU and GPU seconds its Dask workers spent on it.
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
    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    gpu_seconds: float | None = None
    peak_memory_bytes: int | None = None

    def add_usage(self, usage: dict[str, float | int]) -> None:
        """Add measured resource use (e.g. of Dask workers) to what is recorded."""
        for name, value in usage.items():
            current = getattr(self, name)
            if name == "peak_memory_bytes":
                setattr(self, name, max(current or 0, int(value)))
            else:
                setattr(self, name, round((current or 0.0) + float(value), 3))

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
    version = lake.append("ledger", None, data, run_id=entry.run_id)
    if version % COMPACT_EVERY == 0:  # one file per row otherwise: reads slow down with age
        lake.compact("ledger")
    return version


def read_ledger(
    lake: Lake, dataset: str, ds: str | None = None, *, with_started: bool = False
) -> pd.DataFrame:
    """The ledger rows of `dataset` (and `ds`) saying how stages ended, oldest first, JSON
    columns decoded; `with_started` adds the rows saying a stage began."""
    where = {"dataset": dataset} | ({"ds": ds} if ds is not None else {})
    table = lake.read("ledger", where=where)
    if table.num_rows == 0:
        return pd.DataFrame(columns=LEDGER_SCHEMA.names)
    frame = table.to_pandas()
    if not with_started:
        frame = frame[frame["status"] != STARTED]
    frame = frame.sort_values("finished_at", kind="stable").reset_index(drop=True)
    for name in ("files", "delta_versions", "details"):
        frame[name] = frame[name].map(lambda text: json.loads(text) if text else None)
    return frame


def latest_runs(lake: Lake, dataset: str) -> pd.DataFrame:
    """The most recent row of each (ds, stage) of `dataset`, of the stages of one day; a
    stage begun and not ended is `running` or `crashed`."""
    return _with_unfinished_resolved(_latest_of(read_ledger(lake, dataset, with_started=True)))


def _latest_of(ledger: pd.DataFrame) -> pd.DataFrame:
    ledger = ledger[~ledger["stage"].isin(RANGE_STAGES)]
    if ledger.empty:
        return ledger
    return ledger.groupby(["ds", "stage"], as_index=False).tail(1).reset_index(drop=True)


def backfill_records(lake: Lake, dataset: str) -> list[dict[str, Any]]:
    """The latest ledger row of each backfill of `dataset` (its id is the row's run id),
    oldest first."""
    frame = read_ledger(lake, dataset)
    frame = frame[frame["stage"] == "backfill"]
    return frame.groupby("run_id", sort=False).tail(1).to_dict("records")


def ingested_elsewhere(lake: Lake, dataset: str, ds: str) -> dict[str, str]:
    """sha256 → "ds=D path" of each file the latest succeeded ingest of every other day
    of `dataset` read."""
    ledger = read_ledger(lake, dataset)
    ingests = ledger[(ledger["stage"] == "ingest") & (ledger["ds"] != ds)]
    ingests = ingests[ingests["status"] == "succeeded"].groupby("ds").tail(1)
    return {
        file["sha256"]: f"ds={day} {file['path']}"
        for day, files in zip(ingests["ds"], ingests["files"], strict=True)
        for file in files or []
        if "sha256" in file and "same_as" not in file
    }


def last_succeeded(lake: Lake, dataset: str, ds: str, stage: str) -> dict[str, Any] | None:
    """The latest succeeded run of `stage` for (dataset, ds), as a dict, or None."""
    frame = read_ledger(lake, dataset, ds)
    frame = frame[(frame["stage"] == stage) & (frame["status"] == "succeeded")]
    return None if frame.empty else frame.iloc[-1].to_dict()


def day_stages(lake: Lake, dataset: str, ds: str) -> list[dict[str, Any]]:
    """The latest run of each stage of (dataset, ds), in pipeline order."""
    latest = latest_runs(lake, dataset)
    if latest.empty:
        return []
    runs = {row["stage"]: row for row in latest[latest["ds"] == ds].to_dict("records")}
    return [runs[stage] for stage in STAGES if stage in runs]


def succeeded_days(lake: Lake, dataset: str, stage: str) -> list[str]:
    """The days whose latest run of `stage` succeeded, oldest first."""
    latest = latest_runs(lake, dataset)
    if latest.empty:
        return []
    done = latest[(latest["stage"] == stage) & (latest["status"] == "succeeded")]
    return sorted(done["ds"])


@contextmanager
def ledger_stage(
    lake: Lake,
    dataset: str,
    ds: str,
    stage: str,
    run_id: str,
):
    """Records the stage as started (host and pid: a reader can tell a running stage from
    one whose process died), then yields the stage's `LedgerEntry` to fill in and records
    it when the stage ends, with the stage's resource use; as failed (with the error) if
    the stage raised. A stage that failed before its commit (no `delta_versions`) wrote no
    row: its row keeps what it read (`rows_in`) and claims nothing written. The rows are
    appended by plain calls, not Prefect tasks: the lake retries and reconciles each
    commit, and ten task runs more a day would only load the Prefect API."""
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    record_entry(lake, LedgerEntry(dataset, ds, stage, run_id, status=STARTED, details=where))
    entry = LedgerEntry(dataset=dataset, ds=ds, stage=stage, run_id=run_id)
    meter = StageMeter().start()
    try:
        yield entry
    except BaseException as error:
        # A signal (cancellation, termination, Ctrl-C) interrupts the stage; Prefect's state
        # hooks then record how the run ended (cancelled, crashed) after this row.
        entry.status = "failed" if isinstance(error, Exception) else "interrupted"
        entry.error = f"{type(error).__name__}: {error}"[:2000]
        if not entry.delta_versions:
            entry.rows_out = entry.rows_diverted = None
        entry.add_usage(meter.stop())
        record_entry(lake, entry)
        raise
    entry.add_usage(meter.stop())
    record_entry(lake, entry)


def record_ended_run(
    lake: Lake, dataset: str, ds: str, stage: str, run_id: str, status: str, message: str
) -> None:
    """Record how a run ended when its stage did not record it (crashed, cancelled, or
    interrupted by the signal that ended it)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    recorded = read_ledger(lake, dataset, ds)
    mine = recorded[(recorded["run_id"] == run_id) & (recorded["stage"] == stage)]
    if mine["status"].isin([s for s in FINAL_STATUSES if s != "interrupted"]).any():
        return
    entry = LedgerEntry(dataset, ds, stage, run_id, status=status, error=message[:2000])
    record_entry(lake, entry)


def _stage_value(stages: dict[str, dict], name: str, column: str) -> Any:
    row = stages.get(name)
    return None if row is None or pd.isna(row[column]) else row[column]


def _without_superseded_training(latest: pd.DataFrame) -> pd.DataFrame:
    """Training is not a stage of one day: a training run that failed is news only until a
    later one succeeds, whatever day that one was recorded on."""
    if latest.empty:
        return latest
    trained = latest[(latest["stage"] == "train") & (latest["status"] == "succeeded")]
    if trained.empty:
        return latest
    superseded = (latest["stage"] == "train") & (
        latest["finished_at"] < trained["finished_at"].max()
    )
    return latest[~superseded]


def _with_unfinished_resolved(latest: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """`started` rows (stages with no end recorded) as `running`, or `crashed` with why."""
    started = (latest["status"] == STARTED).to_numpy(dtype=bool)
    if not started.any():
        return latest
    latest, now = latest.copy(), now or datetime.now(UTC)
    for index in latest.index[started]:
        row = latest.loc[index]
        where = row["details"] or {}
        alive = process_alive(where.get("host"), where.get("pid"))
        if alive is None:  # elsewhere: only its age tells
            alive = now - row["finished_at"].to_pydatetime() < STALE_AFTER
        latest.loc[index, "status"] = "running" if alive else "crashed"
        if not alive:
            latest.loc[index, "error"] = (
                f"started {row['finished_at']:%Y-%m-%d %H:%M} UTC by pid {where.get('pid')} on "
                f"{where.get('host')}, which ended without recording how the stage ended"
            )
    return latest


def _replayed_since_validation(ledger: pd.DataFrame) -> dict[str, int]:
    """Per day, the rows that succeeded replays moved from quarantine to silver after the
    day's latest validate (which rebuilds both from bronze, so undoes earlier replays)."""
    moved = {}
    for ds, rows in ledger.groupby("ds"):
        replays = rows[(rows["stage"] == "replay") & (rows["status"] == "succeeded")]
        validated = rows.loc[rows["stage"] == "validate", "finished_at"]
        if not validated.empty:
            replays = replays[replays["finished_at"] > validated.max()]
        moved[ds] = int(replays["rows_out"].fillna(0).sum())
    return moved


def _shifted(count: Any, change: int) -> Any:
    return None if count is None else int(count) + change


def day_status(lake: Lake, dataset: str) -> list[dict[str, Any]]:
    """Per day of `dataset`: row counts and the latest status of each stage, the champion's
    verdict and report, as the ledger records them. Silver and quarantined rows are the
    latest validate's, moved by the replays recorded after it."""
    ledger = read_ledger(lake, dataset, with_started=True)
    latest = _with_unfinished_resolved(_without_superseded_training(_latest_of(ledger)))
    replayed = _replayed_since_validation(ledger)
    days = []
    for ds, runs in latest.groupby("ds", sort=True):
        stage = {row["stage"]: row for row in runs.to_dict("records")}
        value = partial(_stage_value, stage)
        moved = replayed.get(ds, 0)
        days.append(
            {
                "ds": ds,
                "landed": value("ingest", "rows_in"),
                "bronze": value("ingest", "rows_out"),
                "rejected": value("ingest", "rows_diverted"),
                "silver": _shifted(value("validate", "rows_out"), moved),
                "quarantined": _shifted(value("validate", "rows_diverted"), -moved),
                "scored": value("score", "rows_out"),
                "labels": value("labels", "rows_out"),
                "model": value("score", "model_version"),
                "verdict": value("monitor", "verdict"),
                "report": value("monitor", "report"),
                "stages": {name: stage[name]["status"] for name in STAGES if name in stage},
                "errors": {
                    name: row["error"]
                    for name, row in stage.items()
                    if row["status"] not in ("succeeded", "running")
                },
            }
        )
    return days
