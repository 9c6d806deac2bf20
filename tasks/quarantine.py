"""A day's quarantine: reading its rows, and replaying corrected ones into silver.

A replay takes fixes (corrected rows keyed by `_row_id`, values as text as they would land),
puts them in place of the quarantined rows' values and validates them exactly as `validate`
does (`split_valid_rows`). Rows that pass are appended to silver with their lineage, then
deleted from quarantine; rows that still fail stay in quarantine as they are (as landed,
with the checks validation gave them) and the replay's ledger row says what failed now.

Crash safety: silver first, then quarantine. A row leaves quarantine only once it is read
back from silver, so a replay cut short between the two commits leaves it in both (the row
accounting then fails loudly) and the next replay of it, finding it in silver, only removes
it from quarantine. The silver append carries an app transaction derived from the
quarantine version read and the rows moved, so the same replay is never appended twice.
"""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from datasets import Dataset
from tasks.bronze import bronze_schema
from tasks.lake import Lake
from tasks.ledger import LedgerEntry, ledger_stage, read_ledger, record_entry
from tasks.parsing import missing_column_issues, parse_file
from tasks.schema_evolution import migrate_tables
from tasks.validation import quarantine_schema, silver_schema, split_valid_rows

ROW_ID = "_row_id"
SHOWN_LINEAGE = ["_row_id", "_source", "_line", "_failed_checks"]

# Ids listed one by one in the replay's ledger row up to this many; beyond, their count.
LEDGER_IDS_LIMIT = 1000


class ReplayError(ValueError):
    """Fixes that cannot be replayed: an unreadable file, unknown columns, no known row."""


@dataclass(frozen=True)
class Fixes:
    """Corrected rows: `_row_id` and the dataset columns they give, as text; None where a
    fix gives no value (the quarantined value is kept). `name` and `sha256` say which file."""

    rows: pd.DataFrame
    name: str
    sha256: str


@dataclass(frozen=True)
class ReplayOutcome:
    """What a replay did with each fixed row id.

    - `replayed`: passed validation, appended to silver and removed from quarantine;
    - `resumed`: already in silver from a replay cut short, removed from quarantine now;
    - `still_failing`: fails validation with its fix (id → the checks it fails), stays;
    - `already_replayed`: in silver and not in quarantine: nothing to do;
    - `unknown`: in neither this day's quarantine nor its silver.
    """

    replayed: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    still_failing: dict[str, list[str]] = field(default_factory=dict)
    already_replayed: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def moved(self) -> tuple[str, ...]:
        """The rows this replay takes out of quarantine (they are in silver)."""
        return self.replayed + self.resumed


@dataclass(frozen=True)
class ReplayPlan:
    """A replay decided from the tables as read (at quarantine version `quarantine_version`),
    nothing written yet: its outcome and the typed silver rows to append."""

    outcome: ReplayOutcome
    silver: pd.DataFrame
    quarantine_version: int | None

    @property
    def append_key(self) -> str:
        """The silver append's transaction key: the same rows moved from the same quarantine
        state are one replay, appended once."""
        ids = "\n".join(sorted(self.silver[ROW_ID])).encode()
        return f"replay:q{self.quarantine_version}:{hashlib.sha256(ids).hexdigest()[:16]}"


def read_fixes(path: str | Path) -> Fixes:
    """Fixes from a CSV (with a header), JSON lines or Parquet file (optionally gzipped),
    read as ingest reads landed files: one row per fix, values as text. `_row_id` names the
    row; an empty value keeps the quarantined one; other columns starting with `_` (lineage,
    as `tidewater quarantine --json` prints it) are ignored."""
    path = Path(path)
    data = path.read_bytes()
    parsed = parse_file(path.name, data, [ROW_ID])
    if parsed.unreadable:
        raise ReplayError(
            f"{path.name}: fixes are read from .csv, .jsonl or .parquet files (optionally .gz)"
        )
    if parsed.rejects:
        lines = "; ".join(f"line {r.line}: {r.error}" for r in parsed.rejects[:5])
        raise ReplayError(f"{path.name}: {len(parsed.rejects)} line(s) do not parse: {lines}")
    rows = []
    for record in parsed.records:
        row_id = (record.values[ROW_ID] or "").strip()
        if not row_id:
            raise ReplayError(f"{path.name} line {record.line}: no {ROW_ID}")
        given = {k: _given(v) for k, v in record.extra.items() if not k.startswith("_")}
        rows.append({ROW_ID: row_id} | given)
    if not rows:
        raise ReplayError(f"{path.name}: no fixes in the file")
    frame = pd.DataFrame(rows, dtype=object)
    repeated = sorted(set(frame[ROW_ID][frame[ROW_ID].duplicated()]))
    if repeated:
        raise ReplayError(f"{path.name}: rows fixed more than once: {', '.join(repeated[:5])}")
    frame = frame.where(frame.notna(), None)
    return Fixes(frame, path.name, hashlib.sha256(data).hexdigest())


def _given(value: str | None) -> str | None:
    """A fix's value, or None when it gives none (absent, null or blank)."""
    return value if value is not None and value.strip() else None


def quarantined_rows(lake: Lake, dataset: Dataset, ds: str) -> pd.DataFrame:
    """The day's quarantined rows: row id, source file and line, the checks each failed,
    then the dataset's columns as landed; in file and line order."""
    frame = _with_columns(_quarantine(lake, dataset, ds)[0], dataset)
    frame = frame[[*SHOWN_LINEAGE, *dataset.columns]]
    frame["_failed_checks"] = frame["_failed_checks"].map(list)
    return frame.sort_values(["_source", "_line"], kind="stable").reset_index(drop=True)


def _quarantine(lake: Lake, dataset: Dataset, ds: str) -> tuple[pd.DataFrame, int | None]:
    """The day's quarantine slice (as read at one version) and that version (None, and no
    rows, when the table was never written)."""
    version = lake.version("quarantine", dataset.name)
    if version is None:
        return quarantine_schema(bronze_schema(dataset.columns)).empty_table().to_pandas(), None
    table = lake.read("quarantine", dataset.name, where={"ds": ds}, version=version)
    return table.to_pandas(), version


def _with_columns(rows: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """`rows` with every declared and shown column, null where the table lacks it (a column
    declared after the rows were written reads as null, as schema evolution gives it)."""
    rows = rows.copy()
    for name in [*SHOWN_LINEAGE, *dataset.columns]:
        if name not in rows:
            rows[name] = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    return rows


def _silver_ids(lake: Lake, dataset: str, ds: str) -> set[str]:
    if lake.version("silver", dataset) is None:
        return set()
    ids = lake.read("silver", dataset, where={"ds": ds}, columns=[ROW_ID]).column(ROW_ID)
    return set(ids.to_pylist())


def plan_replay(lake: Lake, dataset: Dataset, ds: str, fixes: Fixes) -> ReplayPlan:
    """What replaying `fixes` on (dataset, ds) does, from the tables as they are; writes
    nothing. Raises `ReplayError` when a fix names a column the dataset does not have, or
    when no fixed row is in the day's quarantine or silver."""
    unknown_columns = sorted(set(fixes.rows.columns) - {ROW_ID, *dataset.columns})
    if unknown_columns:
        raise ReplayError(
            f"{fixes.name}: columns {unknown_columns} are not columns of {dataset.name} "
            f"({', '.join(dataset.columns)})"
        )
    quarantine, version = _quarantine(lake, dataset, ds)
    quarantined = set(quarantine[ROW_ID])
    in_silver = _silver_ids(lake, dataset.name, ds)
    ids = list(fixes.rows[ROW_ID])
    unknown = [i for i in ids if i not in quarantined and i not in in_silver]
    if len(unknown) == len(ids):
        raise ReplayError(
            f"none of the {len(ids)} fixed rows of {fixes.name} is a row of {dataset.name} "
            f"ds={ds} (first: {', '.join(unknown[:3])}); `tidewater quarantine "
            f"{dataset.name} --ds {ds}` lists the quarantined rows"
        )
    to_validate = [i for i in ids if i in quarantined and i not in in_silver]
    rows = quarantine[quarantine[ROW_ID].isin(to_validate)]
    split = split_valid_rows.fn(_corrected(rows, fixes.rows, dataset), dataset)
    outcome = ReplayOutcome(
        replayed=tuple(split.silver[ROW_ID]),
        resumed=tuple(i for i in ids if i in quarantined and i in in_silver),
        still_failing={
            row[ROW_ID]: list(row["_failed_checks"]) for row in split.quarantine.to_dict("records")
        },
        already_replayed=tuple(i for i in ids if i in in_silver and i not in quarantined),
        unknown=tuple(unknown),
    )
    return ReplayPlan(outcome, split.silver, version)


def _corrected(quarantined: pd.DataFrame, fixes: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """The quarantined rows as bronze rows, each value its fix gives in place of the landed
    one; a column the fix gives is no longer missing from the row's file."""
    rows = _with_columns(quarantined, dataset).drop(columns="_failed_checks")
    rows = rows.set_index(ROW_ID, drop=False)
    given = fixes.set_index(ROW_ID).reindex(rows.index)
    supplied = given.notna()
    for name in given.columns:
        rows[name] = rows[name].astype(object).mask(supplied[name], given[name])
    rows["_issues"] = [
        _unresolved(issues, given.columns[flags])
        for issues, flags in zip(rows["_issues"], supplied.to_numpy(), strict=True)
    ]
    return rows.reset_index(drop=True)


def _unresolved(issues: str | None, supplied: Iterable[str]) -> str | None:
    """A row's file issues ("; "-joined) less those the supplied columns answer."""
    if not issues:
        return None
    answered = set(missing_column_issues(list(supplied)))
    left = [issue for issue in issues.split("; ") if issue not in answered]
    return "; ".join(left) or None


def replay_fixes(
    lake: Lake, dataset: Dataset, ds: str, fixes: Fixes, run_id: str, who: str | None = None
) -> ReplayOutcome:
    """Replay `fixes` on the day's quarantine: rows that now pass move to silver (typed, with
    their lineage; `_run_id` is the replay's), the rest stay quarantined. Idempotent and safe
    to rerun after a crash (see the module's docstring). Records a `replay` ledger row of
    who replayed which file and what became of each row; `ReplayError` (nothing replayable)
    is raised before anything is written or recorded."""
    plan = plan_replay(lake, dataset, ds, fixes)
    with ledger_stage(lake, dataset.name, ds, "replay", run_id) as entry:
        entry.rows_in = len(fixes.rows)
        entry.rows_diverted = len(plan.outcome.still_failing)
        entry.details = _ledger_details(plan.outcome, fixes, who or getpass.getuser())
        migrate_tables.fn(lake, dataset, ["silver", "quarantine"])
        entry.delta_versions = _move_to_silver(lake, dataset, ds, plan, run_id)
        entry.rows_out = len(plan.outcome.moved)
    return plan.outcome


def _move_to_silver(
    lake: Lake, dataset: Dataset, ds: str, plan: ReplayPlan, run_id: str
) -> dict[str, int]:
    """Append the plan's rows to silver (once), then delete from quarantine the moved rows
    found in silver; returns the Delta versions written."""
    versions: dict[str, int | None] = {}
    if not plan.silver.empty:
        silver = pa.Table.from_pandas(
            plan.silver.assign(_run_id=run_id), schema=silver_schema(dataset), preserve_index=False
        )
        versions["silver"] = lake.append_once(
            "silver", dataset.name, silver, key=plan.append_key, run_id=run_id
        )
    moved = set(plan.outcome.moved)
    absent = moved - _silver_ids(lake, dataset.name, ds)
    if absent:
        raise RuntimeError(
            f"{dataset.name} ds={ds}: {len(absent)} replayed rows are not in silver after the "
            f"append (was the day validated again meanwhile?); they stay quarantined: replay "
            f"again"
        )
    versions["quarantine"] = lake.delete_rows(
        "quarantine", dataset.name, {"ds": ds}, ROW_ID, sorted(moved), run_id=run_id
    )
    return {table: version for table, version in versions.items() if version is not None}


def _ledger_details(outcome: ReplayOutcome, fixes: Fixes, who: str) -> dict[str, Any]:
    return {
        "who": who,
        "fixes": {"file": fixes.name, "sha256": fixes.sha256},
        "replayed": _listed(outcome.replayed),
        "resumed": _listed(outcome.resumed),
        "still_failing": _listed(outcome.still_failing),
        "already_replayed": _listed(outcome.already_replayed),
        "unknown": _listed(outcome.unknown),
    }


def _listed(ids: Collection) -> Any:
    """The ids (or id → checks) as given, or only their count when there are too many."""
    if len(ids) > LEDGER_IDS_LIMIT:
        return {"count": len(ids)}
    return dict(ids) if isinstance(ids, dict) else list(ids)


def rescoring_pending(lake: Lake, dataset: str, ds: str) -> bool:
    """Whether a replay moved rows to silver after the day's pipeline last succeeded, so its
    predictions may not cover them yet."""
    ledger = read_ledger(lake, dataset, ds)
    succeeded = ledger[ledger["status"] == "succeeded"]
    moved = succeeded[(succeeded["stage"] == "replay") & (succeeded["rows_out"] > 0)]
    if moved.empty:
        return False
    piped = succeeded.loc[succeeded["stage"] == "pipeline", "finished_at"]
    return piped.empty or piped.max() < moved["finished_at"].max()


def validation_passes_after_replay(
    lake: Lake, dataset: str, ds: str, limit: float, run_id: str
) -> bool:
    """When the day's latest validate failed only on the quarantine limit (its silver and
    quarantine were written) and replays have since brought the quarantined share within
    `limit`, record the day's validation as succeeded (details say it passed after a
    replay), so that scoring can run; whether it did. Nothing else is touched."""
    ledger = read_ledger(lake, dataset, ds)
    validated = ledger[ledger["stage"] == "validate"]
    if validated.empty:
        return False
    latest = validated.iloc[-1]
    if latest["status"] != "failed" or not str(latest["error"]).startswith(
        "QuarantineLimitExceeded"
    ):
        return False
    silver = len(_silver_ids(lake, dataset, ds))
    quarantined = lake.read("quarantine", dataset, where={"ds": ds}, columns=[ROW_ID]).num_rows
    share = quarantined / max(silver + quarantined, 1)
    if share > limit:
        return False
    record_entry(
        lake,
        LedgerEntry(
            dataset=dataset,
            ds=ds,
            stage="validate",
            run_id=run_id,
            rows_in=silver + quarantined,
            rows_out=silver,
            rows_diverted=quarantined,
            details={"passed_after_replay": True, "quarantine_fraction": round(share, 6)},
        ),
    )
    return True
