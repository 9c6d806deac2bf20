"""Generic helpers for producing landing-zone partitions of any dataset.

Landed files look like files dropped by an upstream system: every value is a string, a missing
value is written as a token (`na_rep`), and each file carries a header row. Writes go through
fsspec, so a landing URI may be a local path or any fsspec URI (`s3://bucket/landing`, ...).
Every encoder is deterministic: the same frame always gives the same bytes (no timestamps in
gzip headers or Parquet metadata), so re-landing a partition rewrites identical files.
"""

from __future__ import annotations

import gzip
import io
import posixpath
from collections.abc import Sequence
from datetime import date
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from datasets.base import daily_partitions

FORMATS: tuple[str, ...] = ("csv", "csv.gz", "parquet", "jsonl")
"""Landed file formats, named by their file extension."""


class LandingFile(NamedTuple):
    """One file of a landing plan.

    `n_rows` is the number of data lines/records after the header; `n_bad` how many of them a
    reader must reject (unparseable lines, or rows failing the schema); `is_drift` whether the
    rows carry planted drift.
    """

    ds: date
    filename: str
    fmt: str
    n_rows: int
    is_drift: bool
    n_bad: int = 0


class BadFile(NamedTuple):
    """A hand-made defective landed file: its name, CSV text, data lines and bad lines."""

    filename: str
    text: str
    n_rows: int
    n_bad: int


def to_landing_strings(df: pd.DataFrame, na_rep: str = "") -> pd.DataFrame:
    """`df` with every value as a string and every missing value as `na_rep`."""
    out = {}
    for column in df.columns:
        values = df[column]
        missing = values.isna().to_numpy()
        text = values.astype(object).astype(str).to_numpy(dtype=object)
        text[missing] = na_rep
        out[column] = text
    return pd.DataFrame(out, columns=df.columns)


def encode_landing_file(df: pd.DataFrame, fmt: str, na_rep: str = "") -> bytes:
    """The bytes of a landed file holding `df` in format `fmt` (one of `FORMATS`)."""
    strings = to_landing_strings(df, na_rep)
    if fmt in ("csv", "csv.gz"):
        data = strings.to_csv(index=False, lineterminator="\n").encode()
        return gzip.compress(data, compresslevel=9, mtime=0) if fmt == "csv.gz" else data
    if fmt == "jsonl":
        if strings.empty:
            return b""
        text = strings.to_json(orient="records", lines=True, force_ascii=False)
        return (text if text.endswith("\n") else text + "\n").encode()
    if fmt == "parquet":
        table = pa.table(
            {str(c): pa.array(strings[c].tolist(), type=pa.string()) for c in strings.columns}
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy")
        return buffer.getvalue()
    raise ValueError(f"unknown landing format {fmt!r}; expected one of {FORMATS}")


def write_bytes(uri: str, data: bytes, storage_options: dict[str, Any] | None = None) -> str:
    """Writes `data` to `uri` (creating parent folders where the filesystem has them)."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)
    return uri


def write_landing_file(
    df: pd.DataFrame,
    uri: str,
    fmt: str,
    storage_options: dict[str, Any] | None = None,
    *,
    na_rep: str = "",
) -> str:
    """Writes `df` as one landed file at `uri` in format `fmt`; returns `uri`."""
    return write_bytes(uri, encode_landing_file(df, fmt, na_rep), storage_options)


def partition_uri(landing_uri: str, dataset: str, ds: date) -> str:
    """The folder of one daily partition: `{landing_uri}/{dataset}/ds=YYYY-MM-DD`."""
    return f"{landing_uri.rstrip('/')}/{dataset}/ds={ds.isoformat()}"


def clear_partition(uri: str, storage_options: dict[str, Any] | None = None) -> None:
    """Removes a partition folder and everything in it, if it exists."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def day_format(day: int, days: int) -> str:
    """The format of day `day`'s data file: plain CSV, except days 1-3 of a run of 4+ days."""
    if days >= 4 and 1 <= day <= 3:
        return FORMATS[day]
    return "csv"


def bad_file_days(days: int) -> tuple[int, int]:
    """The day indices receiving the malformed and the wrong-types file."""
    if days >= 5:
        return 1, 4
    return max(days - 2, 0), days - 1


def day_chunks(n_rows: int, days: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffle of `range(n_rows)` split into `days` near-equal consecutive chunks."""
    return np.array_split(rng.permutation(n_rows), days)


def plan_landing(
    n_rows: int,
    start: date,
    days: int,
    drift_from: date | None,
    bad: Sequence[BadFile] = (),
) -> list[LandingFile]:
    """Which files each day gets: one data file a day, plus the `bad` files on their days."""
    if days < 1:
        raise ValueError("days must be at least 1")
    sizes = [len(c) for c in np.array_split(np.arange(n_rows), days)]
    bad_days = bad_file_days(days)
    plan = []
    for day, ds in enumerate(daily_partitions(start, days)):
        is_drift = drift_from is not None and ds >= drift_from
        fmt = day_format(day, days)
        plan.append(LandingFile(ds, f"part-0000.{fmt}", fmt, sizes[day], is_drift))
        for bad_file, bad_day in zip(bad, bad_days, strict=False):
            if bad_day == day:
                plan.append(
                    LandingFile(
                        ds, bad_file.filename, "csv", bad_file.n_rows, False, bad_file.n_bad
                    )
                )
    return plan


def weighted_resample(
    df: pd.DataFrame, weights: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """`len(df)` rows drawn with replacement, with probability proportional to `weights`."""
    p = np.asarray(weights, dtype=float)
    picks = rng.choice(len(df), size=len(df), replace=True, p=p / p.sum())
    return df.iloc[picks].reset_index(drop=True)


def blank_out(
    df: pd.DataFrame, columns: Sequence[str], rate: float, rng: np.random.Generator
) -> pd.DataFrame:
    """A copy of `df` where each value of `columns` is set missing with probability `rate`."""
    out = df.copy()
    for column in columns:
        hit = rng.random(len(out)) < rate
        values = out[column].to_numpy(dtype=object, copy=True)
        values[hit] = None
        out[column] = values
    return out
