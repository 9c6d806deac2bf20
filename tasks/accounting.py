"""Row accounting per (dataset, ds): every landed row is in exactly one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

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


def _row_ids(lake: Lake, table: str, dataset: str, where: dict[str, str]) -> pa.Array:
    """The row ids of a slice (as Arrow: a day of 10M rows as Python strings held 1.5 GB a
    table); raises when one appears twice."""
    if lake.version(table, dataset) is None:
        return pa.array([], pa.string())
    ids = lake.read(table, dataset, where=where, columns=["_row_id"]).column("_row_id")
    ids = ids.combine_chunks() if ids.num_chunks else pa.array([], ids.type)
    repeated = len(ids) - len(pc.unique(ids))  # (count_distinct took twice as long)
    if repeated:
        raise AccountingError(f"{table} holds {repeated} duplicated rows of {where}")
    return ids


def _count_in(ids: pa.Array, others: pa.Array) -> int:
    """How many of `ids` are among `others`."""
    return pc.sum(pc.is_in(ids, value_set=others)).as_py() or 0


@step(retries=2)
def count_rows(
    lake: Lake, dataset: str, ds: str, landed: int, model_version: str | None
) -> RowAccount:
    """How many rows of (dataset, ds) each table holds. Raises on duplicated row ids, when
    silver and quarantine are not a split of bronze (by row id), and when the champion's
    predictions are not exactly the silver rows."""
    where = {"ds": ds}
    ids = {table: _row_ids(lake, table, dataset, where) for table in PIPELINE_TABLES}
    silver, quarantine, bronze = ids["silver"], ids["quarantine"], ids["bronze"]
    in_both = _count_in(silver, quarantine)
    split = pa.concat_arrays([silver, quarantine])
    in_bronze = _count_in(split, bronze)
    if in_both or in_bronze != len(split) or len(split) != len(bronze):
        raise AccountingError(
            f"{dataset} ds={ds}: silver and quarantine are not a split of bronze: "
            f"{in_both} rows in both, "
            f"{len(bronze) - _count_in(bronze, split)} bronze rows in neither, "
            f"{len(split) - in_bronze} rows not in bronze"
        )
    predicted = pa.array([], pa.string())
    if model_version is not None:
        predicted = _row_ids(lake, "predictions", dataset, where | {"model_version": model_version})
        covered = _count_in(predicted, silver)
        if covered != len(predicted) or len(predicted) != len(silver):
            raise AccountingError(
                f"{dataset} ds={ds}: predictions of {model_version} cover "
                f"{covered} of {len(silver)} silver rows "
                f"and {len(predicted) - covered} rows not in silver"
            )
    counts = {table: len(rows) for table, rows in ids.items()}
    return RowAccount(dataset, ds, model_version, landed, predictions=len(predicted), **counts)


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
