"""Validation: bronze text rows → typed silver rows, or quarantined rows with failed checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa

from datasets import Dataset
from tasks import step
from tasks.bronze import LINEAGE_FIELDS
from tasks.lake import Lake

LINEAGE = ["_row_id", "_source", "_line", "_ingested_at", "ds"]


class QuarantineLimitExceeded(RuntimeError):
    """More rows failed validation than the configured maximum fraction allows."""


@dataclass(frozen=True)
class ValidationSplit:
    silver: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def quarantine_fraction(self) -> float:
        total = len(self.silver) + len(self.quarantine)
        return len(self.quarantine) / total if total else 0.0

    def failed_checks(self) -> dict[str, int]:
        """How many quarantined rows failed each check."""
        counts: dict[str, int] = {}
        for checks in self.quarantine["_failed_checks"]:
            for check in checks:
                counts[check] = counts.get(check, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _kind(dtype: object) -> str:
    name = str(dtype).lower()
    if "int" in name:
        return "integer"
    if "float" in name:
        return "float"
    if "bool" in name:
        return "boolean"
    return "string"


def column_kind(dataset: Dataset, name: str) -> str:
    """The kind (`integer`, `float`, `boolean`, `string`) the schema gives column `name`."""
    return _kind(dataset.schema.to_schema().columns[name].dtype)


def cast_text(text: pd.Series, kind: str, null_tokens: Sequence[str] = ("",)) -> pd.Series:
    """Landed text as `kind`: stripped, null tokens null, a value that does not cast null."""
    text = text.astype("string").str.strip()
    text = text.mask(text.isin(list(null_tokens)))
    if kind == "string":
        return text
    if kind == "boolean":
        values = text.str.lower().map({"true": True, "false": False, "1": True, "0": False})
        return values.astype("boolean")
    if kind == "integer":
        return _as_int64(text)
    return pd.to_numeric(text, errors="coerce").astype("Float64")


INT64_RANGE = (-(2**63), 2**63 - 1)
_WHOLE = r"[+-]?\d+(?:\.0*)?"  # digits, maybe with a zero fraction ("39.0")
_FLOAT_EXACT = 2**53  # beyond it a float no longer holds every integer


def _whole_digits(text: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Which texts are whole numbers written in digits, and those digits (sign kept, a
    zero fraction dropped)."""
    whole = text.str.fullmatch(_WHOLE).fillna(False).to_numpy(dtype=bool)
    return whole, text[whole].str.replace(r"\.0*$", "", regex=True)


def _as_int64(text: pd.Series) -> pd.Series:
    """Integer text as Int64, exactly: digits are converted without a float in between;
    other numerals ("1e3") only where a float holds them exactly. Fractions and values
    beyond 64 bits are null (see `beyond_int64`)."""
    out = pd.Series(pd.NA, index=text.index, dtype="Int64")
    whole, digits = _whole_digits(text)
    short = (digits.str.lstrip("+-").str.len() <= 18).to_numpy(dtype=bool)  # fit in 64 bits
    out[digits.index[short]] = pd.to_numeric(digits[short]).astype("Int64")
    for index, value in digits[~short].map(int).items():
        if INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            out[index] = value
    numbers = pd.to_numeric(text[~whole], errors="coerce")
    exact = numbers.notna() & (numbers.abs() <= _FLOAT_EXACT) & (numbers == np.round(numbers))
    out[numbers.index[exact.to_numpy(dtype=bool)]] = numbers[exact].astype("Int64")
    return out


def beyond_int64(text: pd.Series) -> pd.Series:
    """Whether each text is a whole number outside the 64-bit integer range."""
    text = text.astype("string").str.strip()
    whole, digits = _whole_digits(text)
    beyond = pd.Series(False, index=text.index)
    long = digits[(digits.str.lstrip("+-").str.len() > 18).to_numpy(dtype=bool)]
    beyond[long.index] = long.map(lambda v: not INT64_RANGE[0] <= int(v) <= INT64_RANGE[1])
    numbers = pd.to_numeric(text[~whole], errors="coerce")
    beyond[numbers.index] = (numbers.abs() >= 2.0**63).fillna(False).to_numpy(dtype=bool)
    return beyond.astype(bool)


def type_columns(bronze: pd.DataFrame, dataset: Dataset) -> tuple[pd.DataFrame, pd.Series]:
    """Bronze text columns typed as the schema says, and per row the casts that failed.

    Values are stripped; the dataset's missing tokens become null.
    """
    null_tokens = dataset.landing.null_tokens
    typed = {}
    failures = pd.Series([[] for _ in range(len(bronze))], index=bronze.index, dtype=object)
    for name in dataset.columns:
        kind = column_kind(dataset, name)
        values = cast_text(bronze[name], kind, null_tokens)
        if kind != "string":
            given = cast_text(bronze[name], "string", null_tokens)
            bad = (given.notna() & values.isna()).to_numpy(dtype=bool)
            beyond = (kind == "integer") & beyond_int64(given).to_numpy(dtype=bool)
            for index in bronze.index[bad & ~beyond]:
                failures.at[index] = failures.at[index] + [f"{name}: not a valid {kind}"]
            for index in bronze.index[bad & beyond]:
                failures.at[index] = failures.at[index] + [f"{name}: beyond the 64-bit integers"]
        typed[name] = values
    return pd.DataFrame(typed, index=bronze.index), failures


@step
def split_valid_rows(bronze: pd.DataFrame, dataset: Dataset) -> ValidationSplit:
    """Valid rows (typed) and failing rows (as landed, with every check they failed)."""
    bronze = bronze.set_index("_row_id", drop=False)
    typed, failures = type_columns(bronze, dataset)
    issues = bronze["_issues"].dropna() if "_issues" in bronze else pd.Series(dtype=object)
    for index, text in issues.items():
        failures.at[index] = failures.at[index] + [f"file: {part}" for part in text.split("; ")]
    try:
        dataset.schema.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        unplaced = cases[cases["index"].isna()]
        if not unplaced.empty:
            summary = "; ".join(f"{c.column}: {c.check}" for c in unplaced.itertuples())
            raise ValueError(f"{dataset.name} schema failed as a whole: {summary}") from errors
        for case in cases.itertuples():
            # a row-wide (DataFrameSchema) check is reported for every column: name it once
            where = "row" if case.schema_context == "DataFrameSchema" else case.column
            failures.at[case.index] = failures.at[case.index] + [f"{where}: {case.check}"]
    failed = failures.map(bool).to_numpy(dtype=bool)
    silver = typed[~failed].copy()
    for name in LINEAGE:
        silver[name] = bronze.loc[~failed, name]
    quarantine = bronze[failed].copy()
    quarantine["_failed_checks"] = failures[failed].map(lambda checks: sorted(set(checks)))
    return ValidationSplit(
        silver=silver.reset_index(drop=True), quarantine=quarantine.reset_index(drop=True)
    )


def quarantine_samples(split: ValidationSplit, n: int = 5) -> list[dict]:
    """The first `n` quarantined rows: where they came from, what failed, the values named."""
    samples = []
    for row in split.quarantine.head(n).to_dict("records"):
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


def check_quarantine_limit(split: ValidationSplit, dataset: str, ds: str, limit: float) -> None:
    """Fail with a clear message when too many rows were quarantined."""
    if split.quarantine_fraction > limit:
        top = ", ".join(f"{check} ({n})" for check, n in list(split.failed_checks().items())[:5])
        raise QuarantineLimitExceeded(
            f"{dataset} ds={ds}: {len(split.quarantine)} of "
            f"{len(split.silver) + len(split.quarantine)} rows quarantined "
            f"({split.quarantine_fraction:.1%} > limit {limit:.1%}); most failed checks: {top}"
        )


_ARROW_TYPES = {"integer": pa.int64(), "float": pa.float64(), "boolean": pa.bool_()}


def silver_schema(dataset: Dataset) -> pa.Schema:
    """Typed dataset columns, then lineage."""
    columns = dataset.schema.to_schema().columns
    typed = [
        (name, _ARROW_TYPES.get(_kind(columns[name].dtype), pa.string()))
        for name in dataset.columns
    ]
    return pa.schema(typed + LINEAGE_FIELDS + [("ds", pa.string())])


def quarantine_schema(bronze: pa.Schema) -> pa.Schema:
    return bronze.append(pa.field("_failed_checks", pa.list_(pa.string())))


@step(retries=2)
def write_validated(
    lake: Lake, dataset: Dataset, ds: str, split: ValidationSplit, bronze: pa.Schema, run_id: str
) -> dict:
    """Replace the day's quarantine, then its silver rows; returns the Delta versions written."""
    silver = split.silver.assign(_run_id=run_id)
    quarantine = split.quarantine.assign(_run_id=run_id)
    where = {"ds": ds}
    silver_table = pa.Table.from_pandas(silver, schema=silver_schema(dataset), preserve_index=False)
    quarantine_table = pa.Table.from_pandas(
        quarantine, schema=quarantine_schema(bronze), preserve_index=False
    )
    return {
        "quarantine": lake.replace_slice(
            "quarantine", dataset.name, quarantine_table, where, run_id=run_id
        ),
        "silver": lake.replace_slice("silver", dataset.name, silver_table, where, run_id=run_id),
    }
