"""Row accounting per (dataset, ds): every landed row is in exactly one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from datasets import row_id_numbers
from tasks import step
from tasks.lake import Lake

PIPELINE_TABLES = ("bronze", "rejects", "silver", "quarantine")
ID_BATCH_ROWS = 1_000_000


class AccountingError(RuntimeError):
    """The tables do not account for every row of a day."""


@dataclass(frozen=True)
class RowAccount:
    dataset: str
    ds: str
    model_version: str | None
    landed: int
    bronze: int
    rejects: int
    silver: int
    quarantine: int
    predictions: int

    def as_dict(self) -> dict:
        return asdict(self)


def _row_ids(lake: Lake, table: str, dataset: str, where: dict[str, str]) -> pa.ChunkedArray:
    """The row ids of a slice, as Arrow (a day of 10M rows as Python strings held 1.5 GB
    a table)."""
    if lake.version(table, dataset) is None:
        return pa.chunked_array([], pa.string())
    return lake.read(table, dataset, where=where, columns=["_row_id"]).column("_row_id")


def _id_numbers(lake: Lake, dataset: str, slices: dict[str, dict]) -> dict[str, np.ndarray]:
    """Each slice's row ids as 64-bit numbers, read a batch at a time (the text of 10M ids
    is 200 MB, their numbers 80 MB): the numbers they spell (every id the pipeline writes),
    else (ids named otherwise, in any table) their index in one dictionary of every
    table's ids."""
    numbers = {}
    for table, where in slices.items():
        batches = [np.zeros(0, np.uint64)]
        for batch in lake.read_batches(table, dataset, where, ID_BATCH_ROWS, columns=["_row_id"]):
            batches.append(row_id_numbers(batch.column("_row_id")))
            if batches[-1] is None:
                return _dictionary_numbers(
                    {name: _row_ids(lake, name, dataset, rows) for name, rows in slices.items()}
                )
        numbers[table] = np.concatenate(batches)
    return numbers


def _dictionary_numbers(ids: dict[str, pa.ChunkedArray]) -> dict[str, np.ndarray]:
    """Each table's ids as their index in one dictionary of all of them (one hash pass)."""
    tables = list(ids.values())
    if len({rows.type for rows in tables}) > 1:  # e.g. an empty table's plain strings
        tables = [rows.cast(pa.large_string()) for rows in tables]
    chunks = [chunk for rows in tables for chunk in rows.chunks]
    # one memo for every chunk: the chunks share the final dictionary (no copy of the ids)
    encoded = pa.chunked_array(chunks, tables[0].type).dictionary_encode()
    codes = np.concatenate(
        [np.zeros(0, np.uint64)]
        + [chunk.indices.to_numpy().astype(np.uint64) for chunk in encoded.chunks]
    )
    bounds = np.cumsum([0, *(len(rows) for rows in tables)])
    return {table: codes[bounds[i] : bounds[i + 1]] for i, table in enumerate(ids)}


class _Ids:
    """Each table's row ids, sorted and distinct (8 bytes an id): which ids it holds."""

    def __init__(self, numbers: dict[str, np.ndarray]):
        self.sizes = {table: len(ids) for table, ids in numbers.items()}
        self.distinct = {}
        for table, ids in numbers.items():
            ids.sort()
            self.distinct[table] = ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids

    def repeated(self, table: str) -> int:
        """How many of `table`'s rows repeat an id it holds already."""
        return self.sizes[table] - len(self.distinct[table])

    def common(self, table: str, *others: str) -> int:
        """How many (distinct) ids of `table` one of `others` holds too."""
        ids = self.distinct[table]
        held = np.zeros(len(ids), dtype=bool)
        for other in others:
            held |= _held_by(ids, self.distinct[other])
        return int(held.sum())


def _held_by(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Per id, whether the sorted `sorted_ids` holds it."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[position] == ids


@step(retries=2)
def count_rows(
    lake: Lake, dataset: str, ds: str, landed: int, model_version: str | None
) -> RowAccount:
    """How many rows of (dataset, ds) each table holds. Raises on duplicated row ids, when
    silver and quarantine are not a split of bronze (by row id), and when the champion's
    predictions are not exactly the silver rows."""
    slices = {table: {"ds": ds} for table in PIPELINE_TABLES}
    if model_version is not None:
        slices["predictions"] = {"ds": ds, "model_version": model_version}
    ids = _Ids(_id_numbers(lake, dataset, slices))
    for table, where in slices.items():
        if ids.repeated(table):
            raise AccountingError(f"{table} holds {ids.repeated(table)} duplicated rows of {where}")
    silver, quarantine, bronze = (ids.sizes[t] for t in ("silver", "quarantine", "bronze"))
    in_both = ids.common("silver", "quarantine")
    in_bronze = ids.common("silver", "bronze") + ids.common("quarantine", "bronze")
    if in_both or in_bronze != silver + quarantine or silver + quarantine != bronze:
        raise AccountingError(
            f"{dataset} ds={ds}: silver and quarantine are not a split of bronze: "
            f"{in_both} rows in both, "
            f"{bronze - ids.common('bronze', 'silver', 'quarantine')} bronze rows in neither, "
            f"{silver + quarantine - in_bronze} rows not in bronze"
        )
    predicted = ids.sizes.get("predictions", 0)
    if model_version is not None:
        covered = ids.common("predictions", "silver")
        if covered != predicted or predicted != silver:
            raise AccountingError(
                f"{dataset} ds={ds}: predictions of {model_version} cover "
                f"{covered} of {silver} silver rows "
                f"and {predicted - covered} rows not in silver"
            )
    counts = {table: ids.sizes[table] for table in PIPELINE_TABLES}
    return RowAccount(dataset, ds, model_version, landed, predictions=predicted, **counts)


@step
def check_accounting(account: RowAccount) -> None:
    """landed = bronze + rejects; bronze = silver + quarantine; silver = champion predictions."""
    problems = []
    if account.landed != account.bronze + account.rejects:
        problems.append(
            f"landed {account.landed} != bronze {account.bronze} + rejects {account.rejects}"
        )
    if account.bronze != account.silver + account.quarantine:
        problems.append(
            f"bronze {account.bronze} != silver {account.silver} + quarantine {account.quarantine}"
        )
    if account.silver != account.predictions:
        problems.append(f"silver {account.silver} != predictions {account.predictions}")
    if problems:
        raise AccountingError(f"{account.dataset} ds={account.ds}: " + "; ".join(problems))
