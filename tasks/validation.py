"""Validation: bronze text rows → typed silver rows, or quarantined rows with failed checks."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc
from pandera.backends.pandas.checks import PandasCheckBackend

from datasets import Dataset
from tasks import step
from tasks.bronze import LINEAGE_FIELDS, bronze_schema
from tasks.casting import ARROW_TYPES, PANDAS_TYPES, as_pandas, cast_text, decoded, kind_of
from tasks.checks import check_label, column_failures
from tasks.lake import Lake, StagedFile, StagingWriter

LINEAGE = ["_row_id", "_source", "_line", "_ingested_at", "ds"]


class QuarantineLimitExceeded(RuntimeError):
    """More rows failed validation than the configured maximum fraction allows."""


@dataclass(frozen=True)
class ValidationSplit:
    """The day's rows split: typed valid rows with lineage (`silver_rows`), and the rows as
    landed with every check they failed (`quarantine_rows`); pandas views of each."""

    silver_rows: pa.Table
    quarantine_rows: pa.Table

    @cached_property
    def silver(self) -> pd.DataFrame:
        return decoded(self.silver_rows).to_pandas(types_mapper=PANDAS_TYPES.get)

    @cached_property
    def quarantine(self) -> pd.DataFrame:
        frame = self.quarantine_rows.to_pandas()
        frame["_failed_checks"] = frame["_failed_checks"].map(list)
        return frame

    @property
    def quarantined_count(self) -> int:
        return self.quarantine_rows.num_rows

    @property
    def row_count(self) -> int:
        return self.silver_rows.num_rows + self.quarantine_rows.num_rows

    @property
    def quarantine_fraction(self) -> float:
        return self.quarantined_count / self.row_count if self.row_count else 0.0

    def failed_checks(self) -> dict[str, int]:
        """How many quarantined rows failed each check."""
        checks = pc.list_flatten(self.quarantine_rows.column("_failed_checks"))
        counts = {row["values"]: row["counts"] for row in pc.value_counts(checks).to_pylist()}
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def column_kind(dataset: Dataset, name: str) -> str:
    """The kind (`integer`, `float`, `boolean`, `string`) the schema gives column `name`."""
    return kind_of(dataset.schema.to_schema().columns[name].dtype)


@dataclass
class _Column:
    """A dataset column typed and checked: its values, the failures of its cast and of its
    checks, and its pandas form where a check needed it."""

    name: str
    values: pa.ChunkedArray
    failures: list[tuple[str, np.ndarray]]
    pandas: pd.Series | None


def _typed_and_checked(
    text: pa.ChunkedArray, name: str, column: pandera.Column, null_tokens, for_pandas: bool
) -> _Column:
    """Column `name` of bronze (`text`) typed as `column` says and checked; its pandas form
    made too where `for_pandas` (the row-wide checks read every column)."""
    kind = kind_of(column.dtype)
    cast = cast_text(text, kind, null_tokens)
    values = cast.values
    if not isinstance(values, pa.ChunkedArray):
        values = pa.chunked_array([values])
    failures = []
    if cast.invalid.any():
        failures.append((f"{name}: not a valid {kind}", cast.invalid & ~cast.beyond))
        failures.append((f"{name}: beyond the 64-bit integers", cast.invalid & cast.beyond))
    series = cache(lambda: _as_pandas(values))  # converted once, where a check reads it
    failures.extend(column_failures(name, values, column, series))
    return _Column(name, values, failures, series() if for_pandas else None)


@step
def split_valid_rows(bronze: pa.Table | pd.DataFrame, dataset: Dataset) -> ValidationSplit:
    """Valid rows (typed) and failing rows (as landed, with every check they failed)."""
    if isinstance(bronze, pd.DataFrame):
        bronze = pa.Table.from_pandas(bronze, preserve_index=False)
    schema, null_tokens = dataset.schema.to_schema(), dataset.landing.null_tokens

    def typed_and_checked(name: str) -> _Column:
        return _typed_and_checked(bronze.column(name), name, schema.columns[name], null_tokens,
                                  for_pandas=bool(schema.checks))  # fmt: skip

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # Arrow computes outside the GIL
        columns = list(pool.map(typed_and_checked, dataset.columns))
    typed = pa.table({column.name: column.values for column in columns})
    failures = [failure for column in columns for failure in column.failures]
    failures.extend(_file_issues(bronze))
    as_pandas = _PandasView(typed, {column.name: column.pandas for column in columns})
    failures.extend(_row_check_failures(schema, typed, as_pandas, dataset.name))
    failed = np.zeros(bronze.num_rows, dtype=bool)
    for _, rows in failures:
        failed |= rows
    silver = typed
    for name in LINEAGE:
        silver = silver.append_column(name, bronze.column(name))
    if failed.any():  # else every row is silver as it is
        silver, quarantine = _rows_where(silver, ~failed), _rows_where(bronze, failed)
    else:
        quarantine = bronze.slice(0, 0)
    quarantine = quarantine.append_column(
        pa.field("_failed_checks", pa.list_(pa.string())),
        _checks_per_row(failures, failed),
    )
    return ValidationSplit(silver, quarantine)


def _rows_where(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of `table` where `keep` is true, its columns filtered side by side (not
    `take`: on chunked columns it joins the chunks first)."""
    mask = pa.array(keep)
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # Arrow filters outside the GIL
        columns = list(pool.map(lambda column: column.filter(mask), table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


class _PandasView:
    """The typed columns as one pandas frame, built once and only when a row-wide check
    needs it: Int64, Float64 and boolean columns, text of few distinct values as a
    Categorical (converted without decoding), other text as objects. Columns already
    converted (`converted`, by name) are taken as they are."""

    def __init__(self, typed: pa.Table, converted: dict[str, pd.Series | None] | None = None):
        self.typed, self.converted = typed, converted or {}

    @cached_property
    def frame(self) -> pd.DataFrame:
        columns = {}
        for name in self.typed.column_names:
            given = self.converted.get(name)
            columns[name] = _as_pandas(self.typed.column(name)) if given is None else given
        return pd.DataFrame(columns, copy=False)


def _as_pandas(column: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_dictionary(column.type) and column.num_chunks > 1:
        column = column.unify_dictionaries()
    return as_pandas(column)


def _file_issues(bronze: pa.Table) -> list[tuple[str, np.ndarray]]:
    """What parsing found wrong with each row's file (`_issues`), one failure per issue."""
    if (
        "_issues" not in bronze.column_names
        or bronze.column("_issues").null_count == bronze.num_rows
    ):
        return []
    issues = bronze.column("_issues")
    failures = []
    for text in pc.unique(issues).drop_null().to_pylist():
        rows = pc.fill_null(pc.equal(issues, text), False).to_numpy(zero_copy_only=False)
        failures.extend((f"file: {part}", rows) for part in text.split("; "))
    return failures


def _row_check_failures(
    schema: pandera.DataFrameSchema, typed: pa.Table, as_pandas: _PandasView, dataset: str
) -> list[tuple[str, np.ndarray]]:
    """Failures of the row-wide (DataFrameSchema) checks, each named once per row, not once
    per column. pandera's backend runs each check's function on the typed rows; what it
    makes of the output is done here, as pandera does it (a row of nulls only passes)."""
    failures = []
    for check in schema.checks:
        backend = PandasCheckBackend(check)
        frame = as_pandas.frame
        output = backend.apply(backend.preprocess(frame, None))
        if isinstance(output, pd.DataFrame):
            passes = (output.fillna(False) | frame.isna()).all(axis="columns").to_numpy(bool)
        elif isinstance(output, pd.Series):
            passes = output.fillna(False).to_numpy(dtype=bool)
            passes = passes | _all_null(typed) if check.ignore_na else passes
        elif not bool(output):
            raise ValueError(f"{dataset} schema failed as a whole: row: {check_label(check)}")
        else:
            continue
        if not passes.all():
            failures.append((f"row: {check_label(check)}", ~passes))
    return failures


def _all_null(typed: pa.Table) -> np.ndarray:
    """Per row, whether every column is null (none is where a column has no null)."""
    if any(column.null_count == 0 for column in typed.columns):
        return np.zeros(typed.num_rows, dtype=bool)
    all_null = np.ones(typed.num_rows, dtype=bool)
    for column in typed.columns:
        all_null &= pc.is_null(column).to_numpy(zero_copy_only=False)
    return all_null


def _checks_per_row(failures: list[tuple[str, np.ndarray]], failed: np.ndarray) -> pa.ListArray:
    """For each failed row (in order), the sorted labels of the checks it failed."""
    labels = sorted({label for label, _ in failures})
    number = {label: index for index, label in enumerate(labels)}
    rank = np.cumsum(failed) - 1  # a failed row's place among the failed rows
    pairs = np.unique(  # row * labels + check, once each: by row, then by label
        np.concatenate(
            [np.zeros(0, np.int64)]
            + [rank[np.flatnonzero(hit)] * len(labels) + number[label] for label, hit in failures]
        )
    )
    rows, checks = np.divmod(pairs, max(len(labels), 1))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=int(failed.sum())))])
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(labels, pa.string()).take(pa.array(checks))
    )


def quarantine_samples(split: ValidationSplit, n: int = 5) -> list[dict]:
    """The first `n` quarantined rows: where they came from, what failed, the values named."""
    samples = []
    for row in split.quarantine_rows.slice(0, n).to_pylist():
        named = {check.split(":", 1)[0] for check in row["_failed_checks"]}
        values = {name: row[name] for name in sorted(named) if name in row}
        samples.append(
            {
                "row_id": row["_row_id"],
                "file": str(row["_source"]).rsplit("/", 1)[-1],
                "line": row["_line"],
                "checks": list(row["_failed_checks"]),
                "values": ", ".join(f"{k}={v!r}" for k, v in values.items()),
            }
        )
    return samples


def check_quarantine_limit(
    split: ValidationSplit | StagedValidation, dataset: str, ds: str, limit: float
) -> None:
    """Fail with a clear message when too many rows were quarantined."""
    if split.quarantine_fraction > limit:
        top = ", ".join(f"{check} ({n})" for check, n in list(split.failed_checks().items())[:5])
        raise QuarantineLimitExceeded(
            f"{dataset} ds={ds}: {split.quarantined_count} of {split.row_count} rows "
            f"quarantined ({split.quarantine_fraction:.1%} > limit {limit:.1%}); most failed "
            f"checks: {top}"
        )


def silver_schema(dataset: Dataset) -> pa.Schema:
    """Typed dataset columns, then lineage."""
    columns = dataset.schema.to_schema().columns
    typed = [(name, ARROW_TYPES[kind_of(columns[name].dtype)]) for name in dataset.columns]
    return pa.schema(typed + LINEAGE_FIELDS + [("ds", pa.string())])


def quarantine_schema(bronze: pa.Schema) -> pa.Schema:
    return bronze.append(pa.field("_failed_checks", pa.list_(pa.string())))


VALIDATE_BATCH_ROWS = 1 << 18
"""Bronze rows split at once: memory holds one batch (and the one being written)."""


@dataclass
class StagedValidation:
    """A day's bronze rows split batch after batch: silver and quarantine rows written as
    files of their tables, not yet committed (`commit_validated` does), and what the split
    found: rows in, failed checks, the first quarantined rows."""

    silver: list[StagedFile] = field(default_factory=list)
    quarantine: list[StagedFile] = field(default_factory=list)
    rows_in: int = 0
    checks: Counter = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)

    @property
    def silver_count(self) -> int:
        return sum(file.rows for file in self.silver)

    @property
    def quarantined_count(self) -> int:
        return sum(file.rows for file in self.quarantine)

    @property
    def row_count(self) -> int:
        return self.silver_count + self.quarantined_count

    @property
    def quarantine_fraction(self) -> float:
        return self.quarantined_count / self.row_count if self.row_count else 0.0

    def failed_checks(self) -> dict[str, int]:
        """How many quarantined rows failed each check, most first."""
        return dict(sorted(self.checks.items(), key=lambda item: (-item[1], item[0])))


@step
def stage_validated(lake: Lake, dataset: Dataset, ds: str, run_id: str) -> StagedValidation:
    """Split the day's bronze rows `VALIDATE_BATCH_ROWS` at a time (text columns read
    dictionary encoded: typed and checked once per distinct value), each batch's silver
    and quarantine rows written as files while the next batch is split."""
    staged, where = StagedValidation(), {"ds": ds}
    bronze_batches = lake.read_batches("bronze", dataset.name, where, VALIDATE_BATCH_ROWS,
                                       dictionaries=dataset.columns)  # fmt: skip
    with StagingWriter(lake, dataset.name, where) as writer:
        for bronze in bronze_batches:
            split = split_valid_rows.fn(bronze, dataset)
            silver, quarantine = _stamped(split, dataset, run_id)
            writer.stage("silver", silver)
            writer.stage("quarantine", quarantine)
            staged.rows_in += bronze.num_rows
            staged.checks.update(split.failed_checks())
            staged.samples += quarantine_samples(split, 5 - len(staged.samples))
    staged.silver, staged.quarantine = writer.files("silver"), writer.files("quarantine")
    return staged


@step(retries=2)
def commit_validated(lake: Lake, dataset: Dataset, ds: str, staged: StagedValidation,
                     run_id: str) -> dict:  # fmt: skip
    """Replace the day's quarantine, then its silver rows, by the staged files, each in one
    commit; returns the Delta versions written."""
    where, by_ds = {"ds": ds}, ["ds"]
    quarantine = quarantine_schema(bronze_schema(dataset.columns))
    return {
        "quarantine": lake.commit_files("quarantine", dataset.name, staged.quarantine,
                                        quarantine, where, run_id=run_id, partition_by=by_ds),
        "silver": lake.commit_files("silver", dataset.name, staged.silver,
                                    silver_schema(dataset), where, run_id=run_id,
                                    partition_by=by_ds),
    }  # fmt: skip


def _stamped(split: ValidationSplit, dataset: Dataset, run_id: str) -> tuple[pa.Table, pa.Table]:
    """The split's silver and quarantine rows stamped with the validate run, in the tables'
    schemas."""
    stamp = pa.repeat(pa.scalar(run_id), split.silver_rows.num_rows)
    silver = split.silver_rows.append_column("_run_id", stamp)
    quarantine = split.quarantine_rows
    if "_run_id" in quarantine.column_names:
        quarantine = quarantine.drop_columns(["_run_id"])
    quarantine = quarantine.append_column(
        "_run_id", pa.repeat(pa.scalar(run_id), quarantine.num_rows)
    )
    schema = quarantine_schema(bronze_schema(dataset.columns))
    return (
        silver.select(silver_schema(dataset).names).cast(silver_schema(dataset)),
        quarantine.select(schema.names).cast(schema),
    )
