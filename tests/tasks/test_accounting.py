"""Every landed row is in exactly one place: the accounting fails a day when a table
holds a row twice, a row is in two places or none, or a count does not add up."""

from __future__ import annotations

import re
import sys

import pyarrow as pa
import pytest

from datasets import row_id
from tasks.accounting import AccountingError, RowAccount, check_accounting, count_rows
from tasks.lake import Lake

DS = "2024-01-01"


ID_SHAPES = {
    "named by hand": lambda name: name,  # counted by their text
    "as the pipeline writes them": lambda name: row_id("adult", DS, "day.csv", name),
}
spell = ID_SHAPES["named by hand"]


@pytest.fixture(autouse=True, params=list(ID_SHAPES))
def id_shape(request, monkeypatch) -> None:
    """Every case with ids named by hand and with ids as the pipeline writes them (16 hex
    digits, counted as the numbers they spell)."""
    monkeypatch.setattr(sys.modules[__name__], "spell", ID_SHAPES[request.param])


def ids(*names: str, **columns) -> pa.Table:
    return pa.table({"_row_id": [spell(n) for n in names], "ds": [DS] * len(names), **columns})


@pytest.fixture
def lake(tmp_path) -> Lake:
    """A day of 4 landed rows: 3 to bronze (2 silver, 1 quarantined), 1 rejected; the
    silver rows predicted by v1."""
    lake = Lake(str(tmp_path))
    for table, rows in {
        "bronze": ids("a", "b", "c"),
        "rejects": ids("r"),
        "silver": ids("a", "b"),
        "quarantine": ids("c"),
        "predictions": ids("a", "b", model_version=["v1", "v1"]),
    }.items():
        lake.replace_slice(table, "adult", rows, {"ds": DS}, run_id="t")
    return lake


def replace(lake: Lake, table: str, rows: pa.Table) -> None:
    lake.replace_slice(table, "adult", rows, {"ds": DS}, run_id="t")


def test_a_balanced_day_is_counted_and_passes(lake):
    account = count_rows.fn(lake, "adult", DS, 4, "v1")
    assert (account.dataset, account.ds, account.model_version) == ("adult", DS, "v1")
    assert (account.bronze, account.rejects, account.silver, account.quarantine) == (3, 1, 2, 1)
    assert account.predictions == 2
    check_accounting.fn(account)


def test_a_row_held_twice_fails(lake):
    replace(lake, "silver", ids("a", "b", "b"))
    with pytest.raises(AccountingError, match="silver holds 1 duplicated rows"):
        count_rows.fn(lake, "adult", DS, 4, "v1")


def test_a_row_in_silver_and_quarantine_fails_even_when_the_counts_add_up(lake):
    replace(lake, "quarantine", ids("b"))  # c is nowhere, b twice: 2 + 1 is still 3
    with pytest.raises(AccountingError, match="1 rows in both, 1 bronze rows in neither"):
        count_rows.fn(lake, "adult", DS, 4, "v1")


def test_a_row_in_silver_and_quarantine_fails_even_when_together_they_are_bronze(lake):
    replace(lake, "quarantine", ids("b", "c"))  # bronze a, b, c = silver a, b | quarantine b, c
    with pytest.raises(AccountingError, match="1 rows in both, 0 bronze rows in neither"):
        count_rows.fn(lake, "adult", DS, 4, "v1")


def test_only_the_champions_predictions_are_counted(lake):
    both = ids("a", "b", "a", "b", model_version=["v1", "v1", "v2", "v2"])
    lake.replace_slice("predictions", "adult", both, {"ds": DS}, run_id="t")
    assert count_rows.fn(lake, "adult", DS, 4, "v1").predictions == 2


def test_predictions_not_exactly_the_silver_rows_fail(lake):
    replace(lake, "predictions", ids("a", "c", model_version=["v1", "v1"]))
    with pytest.raises(AccountingError, match="cover 1 of 2 silver rows and 1 rows not in silver"):
        count_rows.fn(lake, "adult", DS, 4, "v1")


def account(**changes) -> RowAccount:
    counts = dict(landed=4, bronze=3, rejects=1, silver=2, quarantine=1, predictions=2)
    return RowAccount("adult", DS, "v1", **(counts | changes))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"landed": 5}, "landed 5 != bronze 3 + rejects 1"),
        ({"rejects": 0}, "landed 4 != bronze 3 + rejects 0"),
        ({"quarantine": 0}, "bronze 3 != silver 2 + quarantine 0"),
        ({"predictions": 1}, "silver 2 != predictions 1"),
    ],
)
def test_each_count_that_does_not_add_up_fails_the_day_naming_it(changes, problem):
    with pytest.raises(AccountingError, match=re.escape(f"adult ds={DS}: {problem}")):
        check_accounting.fn(account(**changes))
    check_accounting.fn(account())


def test_an_account_is_recorded_as_every_count_by_name():
    assert account().as_dict() == {
        "dataset": "adult", "ds": DS, "model_version": "v1", "landed": 4, "bronze": 3,
        "rejects": 1, "silver": 2, "quarantine": 1, "predictions": 2,
    }  # fmt: skip


def test_a_day_with_several_problems_names_each_of_them():
    with pytest.raises(AccountingError) as raised:
        check_accounting.fn(account(landed=5, predictions=1))
    assert str(raised.value) == (
        f"adult ds={DS}: landed 5 != bronze 3 + rejects 1; silver 2 != predictions 1"
    )


def test_a_day_is_counted_alone_whatever_other_days_hold(lake):
    other = "2024-01-02"
    rows = pa.table({"_row_id": [spell("x"), spell("y")], "ds": [other] * 2})
    for table in ("bronze", "silver"):
        lake.replace_slice(table, "adult", rows, {"ds": other}, run_id="t")
    account = count_rows.fn(lake, "adult", DS, 4, "v1")
    assert (account.bronze, account.silver, account.predictions) == (3, 2, 2)


def test_an_id_of_the_other_shape_is_another_row(lake):
    """`c` spelled the other way in quarantine is not bronze's `c` (text is compared where
    the tables mix shapes)."""
    shapes = [shape("c") for shape in ID_SHAPES.values()]
    other = shapes[1] if spell("c") == shapes[0] else shapes[0]
    replace(lake, "quarantine", pa.table({"_row_id": [other], "ds": [DS]}))
    with pytest.raises(AccountingError, match="0 rows in both, 1 bronze rows in neither, 1 rows"):
        count_rows.fn(lake, "adult", DS, 4, "v1")
