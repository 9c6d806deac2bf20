"""Row accounting per (dataset, ds): every landed row is in exactly one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


def _row_ids(lake: Lake, table: str, dataset: str, where: dict[str, str]) -> set[str]:
    """The row ids of a slice; raises when one appears twice."""
    if lake.version(table, dataset) is None:
        return set()
    ids = lake.read(table, dataset, where=where, columns=["_row_id"]).column("_row_id")
    unique = set(ids.to_pylist())
    if len(unique) != len(ids):
        raise AccountingError(f"{table} holds {len(ids) - len(unique)} duplicated rows of {where}")
    return unique


@step(retries=2)
def count_rows(
    lake: Lake, dataset: str, ds: str, landed: int, model_version: str | None
) -> RowAccount:
    """How many rows of (dataset, ds) each table holds. Raises on duplicated row ids, when
    silver and quarantine are not a split of bronze (by row id), and when the champion's
    predictions are not exactly the silver rows."""
    where = {"ds": ds}
    ids = {table: _row_ids(lake, table, dataset, where) for table in PIPELINE_TABLES}
    split = ids["silver"] | ids["quarantine"]
    if ids["silver"] & ids["quarantine"] or split != ids["bronze"]:
        raise AccountingError(
            f"{dataset} ds={ds}: silver and quarantine are not a split of bronze: "
            f"{len(ids['silver'] & ids['quarantine'])} rows in both, "
            f"{len(ids['bronze'] - split)} bronze rows in neither, "
            f"{len(split - ids['bronze'])} rows not in bronze"
        )
    predicted: set[str] = set()
    if model_version is not None:
        predicted = _row_ids(lake, "predictions", dataset, where | {"model_version": model_version})
        if predicted != ids["silver"]:
            raise AccountingError(
                f"{dataset} ds={ds}: predictions of {model_version} cover "
                f"{len(predicted & ids['silver'])} of {len(ids['silver'])} silver rows "
                f"and {len(predicted - ids['silver'])} rows not in silver"
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
