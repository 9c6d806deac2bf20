"""Row accounting per (dataset, ds): every landed row is in exactly one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from tasks import step
from tasks.lake import Lake

PIPELINE_TABLES = ("bronze", "rejects", "silver", "quarantine")


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


class _Ids:
    """Each table's row ids as the numbers of one dictionary of every id (one hash pass
    over all of them; the checks are then counts): per table, which ids it holds."""

    def __init__(self, ids: dict[str, pa.ChunkedArray]):
        self.sizes = {table: len(rows) for table, rows in ids.items()}
        tables = list(ids.values())
        if len({rows.type for rows in tables}) > 1:  # e.g. an empty table's plain strings
            tables = [rows.cast(pa.large_string()) for rows in tables]
        chunks = [chunk for rows in tables for chunk in rows.chunks]
        # one memo for every chunk: the chunks share the final dictionary (no copy of the ids)
        encoded = pa.chunked_array(chunks, tables[0].type).dictionary_encode()
        codes = np.concatenate(
            [np.zeros(0, np.int32)] + [chunk.indices.to_numpy() for chunk in encoded.chunks]
        )
        distinct = len(encoded.chunks[0].dictionary) if encoded.num_chunks else 0
        self.held: dict[str, np.ndarray] = {}
        start = 0
        for table, size in self.sizes.items():
            self.held[table] = np.zeros(distinct, dtype=bool)
            self.held[table][codes[start : start + size]] = True
            start += size

    def repeated(self, table: str) -> int:
        """How many of `table`'s rows repeat an id it holds already."""
        return self.sizes[table] - int(self.held[table].sum())

    def common(self, table: str, *others: str) -> int:
        """How many (distinct) ids of `table` one of `others` holds too."""
        return int((self.held[table] & np.logical_or.reduce([self.held[o] for o in others])).sum())


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
    ids = _Ids({table: _row_ids(lake, table, dataset, where) for table, where in slices.items()})
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
