"""The contract every dataset module fulfils.

A dataset is declarative: a pandera schema on the shared base, its feature roles, the
columns a landed file carries, and how to produce landing partitions (real and synthetic).
The pipeline knows nothing else about a dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow


class DatasetModel(pa.DataFrameModel):
    """Shared base of every dataset schema.

    Rows are validated with `lazy=True` so every failing check of every row is reported;
    extra (lineage) columns are allowed and left untouched.
    """

    class Config:
        coerce = True
        strict = False


@dataclass(frozen=True)
class FeatureRoles:
    """What each column is for.

    `numeric` and `categorical` are the model's features in model order (numeric first).
    `protected` are the attributes bias is measured over; a protected attribute may be
    derived (e.g. an age band) by `derive_protected`. `text` (free text) and `identifiers`
    (ids, keys) are carried to silver but are neither features nor monitored for drift:
    their values are new every day by nature, so any distribution test would alarm.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    positive_label: str
    protected: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


def labels_of(frame: pd.DataFrame, roles: FeatureRoles) -> np.ndarray:
    """1 where the target is the positive label, compared by value whatever the target's
    type (an integer target 1 matches `positive_label="1"`), else 0."""
    target, label = frame[roles.target], str(roles.positive_label).strip()
    if pd.api.types.is_numeric_dtype(target):
        positive = pd.to_numeric(pd.Series([roles.positive_label]), errors="coerce").iloc[0]
        matches = target == positive
    elif isinstance(target.dtype, pd.CategoricalDtype):  # compared once per category
        positive = target.cat.categories.astype("string").str.strip() == label
        # a null's code -1 picks the False appended (also where no value is known at all)
        return np.append(np.asarray(positive, dtype=bool), False)[target.cat.codes].astype(
            np.float32
        )
    else:
        matches = target.astype("string").str.strip() == label
    return matches.fillna(False).to_numpy(dtype=np.float32)


DEFAULT_KINDS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


@dataclass(frozen=True)
class LandingFormat:
    """How the upstream writes the dataset's files, as declared by the dataset.

    - `kinds`: file-name suffix → kind (`csv`, `tsv`, `jsonl`, `parquet`); a file whose
      suffix is not here is not read, and the day's ingest fails naming it and its size.
    - `delimiter`, `quotechar`: of `csv` files (`tsv` is tab-separated).
    - `header`: whether text files start with a header row; without one, `file_columns`
      names the fields in file order (default: the dataset's `columns`).
    - `aliases`: upstream column name → the dataset's column name.
    - `encoding`: of text files; a line that does not decode is a reject with its raw bytes.
    - `null_tokens`: values (after stripping) that mean missing.
    """

    kinds: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    delimiter: str = ","
    quotechar: str = '"'
    header: bool = True
    file_columns: tuple[str, ...] | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"
    null_tokens: tuple[str, ...] = ("",)

    def kind_of(self, name: str) -> str | None:
        """The kind of file `name` by its longest declared suffix, or None."""
        lowered = name.lower()
        for suffix in sorted(self.kinds, key=len, reverse=True):
            if lowered.endswith(suffix.lower()):
                return self.kinds[suffix]
        return None


@dataclass(frozen=True)
class Dataset:
    """One dataset as the pipeline sees it.

    - `columns`: the columns a landed file must carry, in landing order.
    - `schema`: the pandera model silver rows satisfy (typed, checked).
    - `landing`: how the upstream writes the files (`LandingFormat`).
    - `land` (optional, for demos and benchmarks): writes daily landing partitions of the
      real data, returning the URIs written:
      `land(landing_uri, start, days, drift_from=, bad_files=, seed=, storage_options=)`.
    - `synthesize` (optional): `synthesize(n_rows, drift=0.0, seed=0) -> DataFrame` with
      `columns`, typed as silver, at any size; `drift` in [0, 1] moves the population.
    - `derive_protected`: adds derived protected columns (e.g. `age_band`) to a typed frame.
    - `row_key`: the columns that identify a record upstream (e.g. an order id); the labels
      feed names records by them. Without one, labels name records by their `_row_id`.
    - `labels_landing`: how the labels feed (`landing/{name}-labels/ds=…/`) writes its files:
      the key columns and the target, with a header by default.
    """

    name: str
    columns: tuple[str, ...]
    schema: type[DatasetModel]
    roles: FeatureRoles
    landing: LandingFormat = field(default_factory=LandingFormat)
    land: Callable[..., list[str]] | None = None
    synthesize: Callable[..., pd.DataFrame] | None = None
    derive_protected: Callable[[pd.DataFrame], pd.DataFrame] = field(default=lambda df: df)
    row_key: tuple[str, ...] = ()
    labels_landing: LandingFormat = field(default_factory=LandingFormat)
    citation: str = ""

    def __post_init__(self) -> None:
        roles = self.roles
        named = {
            "numeric": roles.numeric,
            "categorical": roles.categorical,
            "target": (roles.target,),
            "text": roles.text,
            "identifiers": roles.identifiers,
            "row_key": self.row_key,
        }
        for role, columns in named.items():
            unknown = [name for name in columns if name not in self.columns]
            if unknown:
                raise ValueError(f"dataset {self.name!r}: {role} names undeclared {unknown}")
        exclusive = roles.features + (roles.target,) + roles.text + roles.identifiers
        repeated = sorted({name for name in exclusive if exclusive.count(name) > 1})
        if repeated:
            raise ValueError(f"dataset {self.name!r}: columns with two roles: {repeated}")

    @property
    def label_key(self) -> tuple[str, ...]:
        """The columns a labels row names its record by."""
        return self.row_key or ("_row_id",)


def row_id(dataset: str, ds: str, name: str, line: int | str | None) -> str:
    """The `_row_id` of the record at `line` of file `name` of partition `ds`: deterministic,
    so an upstream (or a labels feed) can name a record without a key of its own. A key
    that is not a line number (a reject of a whole file) is hashed with the file's name."""
    if isinstance(line, int | np.integer):
        return row_ids(dataset, ds, name, np.array([line], dtype=np.int64))[0].as_py()
    key = f"{dataset}\x1f{ds}\x1f{name}\x1f{line}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def row_ids(dataset: str, ds: str, name: str, lines: np.ndarray) -> pyarrow.Array:
    """`row_id` of each of `lines` of one file, vectorised: the file's hash mixed with each
    line number by SplitMix64's finaliser (a bijection: no two lines of a file share an id),
    as 16 hex digits."""
    file_hash = hashlib.blake2b(f"{dataset}\x1f{ds}\x1f{name}".encode(), digest_size=8)
    key = np.uint64(int.from_bytes(file_hash.digest(), "big"))
    mixed = np.asarray(lines, dtype=np.int64).astype(np.uint64) ^ key
    mixed += np.uint64(0x9E3779B97F4A7C15)
    mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(31)
    octets = mixed.astype(">u8").view(np.uint8).reshape(-1, 8)
    digits = np.empty((len(mixed), 16), dtype=np.uint8)
    digits[:, 0::2] = HEX_DIGITS[octets >> 4]
    digits[:, 1::2] = HEX_DIGITS[octets & 15]
    offsets = np.arange(0, 16 * len(mixed) + 1, 16, dtype=np.int32)
    buffers = [None, pyarrow.py_buffer(offsets), pyarrow.py_buffer(digits)]
    return pyarrow.Array.from_buffers(pyarrow.string(), len(mixed), buffers)


HEX_VALUES = np.full(256, 16, dtype=np.uint8)  # 16: not a digit `row_ids` writes
HEX_VALUES[HEX_DIGITS] = np.arange(16, dtype=np.uint8)


def row_id_numbers(ids: pyarrow.Array | pyarrow.ChunkedArray) -> np.ndarray | None:
    """The 64-bit number each id spells in 16 lowercase hex digits, as `row_ids` writes
    them (8 bytes an id where the text takes 20); None when an id is null or of another
    shape (ids an upstream or a test named otherwise)."""
    chunks = ids.chunks if isinstance(ids, pyarrow.ChunkedArray) else [ids]
    numbers = [np.zeros(0, np.uint64)]
    for chunk in chunks:
        if chunk.null_count or not (
            pyarrow.types.is_string(chunk.type) or pyarrow.types.is_large_string(chunk.type)
        ):
            return None
        width = np.int64 if pyarrow.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], width)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ]
        if len(chunk) == 0:  # its text buffer may be absent
            continue
        if (np.diff(offsets) != 16).any():
            return None
        text = np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        digits = HEX_VALUES[text]
        if (digits == 16).any():
            return None
        octets = (digits[0::2] << 4) | digits[1::2]
        numbers.append(octets.view(">u8").astype(np.uint64))
    return np.concatenate(numbers)


def record_line(kind: str, index: int, header: bool = True) -> int:
    """The line number ingest gives the record at 0-based `index` of a file of `kind`
    written one record per line: text files count lines from 1 (the header is line 1);
    Parquet counts rows from 1."""
    return index + 2 if header and kind in ("csv", "tsv") else index + 1


def daily_partitions(start: date, days: int) -> list[date]:
    """The `days` consecutive dates from `start`."""
    return [date.fromordinal(start.toordinal() + i) for i in range(days)]
