"""A changed declaration is compared with the tables before anything is written: added
columns migrate in place, a removed or retyped column stops the run with the command that
rebuilds the table."""

from __future__ import annotations

import dataclasses

import pandera.pandas as pa
import pyarrow
import pytest
from pandera.typing import Series

from datasets import get_dataset
from datasets.wdbc import WdbcSchema
from tasks.lake import Lake
from tasks.schema_evolution import SchemaMismatch, declared_schemas, migrate_tables, table_changes

WDBC = get_dataset("wdbc")
DAY = "2024-07-01"


class WithNotes(WdbcSchema):
    notes: Series[str] = pa.Field(nullable=True)


class IntegerIds(WdbcSchema):
    id: Series[int] = pa.Field(ge=0)


WITH_NOTES = dataclasses.replace(WDBC, schema=WithNotes, columns=(*WDBC.columns, "notes"))
INTEGER_IDS = dataclasses.replace(WDBC, schema=IntegerIds)


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path))
    for table, schema in declared_schemas(WDBC).items():
        row = pyarrow.Table.from_pylist([{"ds": DAY}], schema)
        lake.replace_slice(table, "wdbc", row, {"ds": DAY}, run_id="r")
    return lake


def test_an_unchanged_declaration_changes_nothing(lake):
    assert table_changes(lake, WDBC, ["bronze", "silver", "quarantine", "labels"]) == []
    assert migrate_tables.fn(lake, WDBC, ["silver"]) == {}


def test_a_declared_column_is_added_and_older_rows_read_it_as_null(lake):
    before = lake.version("silver", "wdbc")
    added = migrate_tables.fn(lake, WITH_NOTES, ["bronze", "silver", "quarantine"])
    assert added == {"bronze": ["notes"], "silver": ["notes"], "quarantine": ["notes"]}
    assert lake.version("silver", "wdbc") == before + 1
    assert lake.read("silver", "wdbc").column("notes").to_pylist() == [None]
    schema = declared_schemas(WITH_NOTES)["silver"]
    row = {"ds": DAY, "notes": "seen twice", "id": "7"}
    lake.replace_slice(
        "silver", "wdbc", pyarrow.Table.from_pylist([row], schema), {"ds": DAY}, run_id="s"
    )
    assert lake.read("silver", "wdbc").column("notes").to_pylist() == ["seen twice"]


def test_a_retyped_column_stops_the_run_naming_table_column_and_command(lake):
    before = lake.version("silver", "wdbc")
    with pytest.raises(SchemaMismatch) as raised:
        migrate_tables.fn(lake, INTEGER_IDS, ["silver", "quarantine"])
    message = str(raised.value)
    assert "silver" in message and lake.uri("silver", "wdbc") in message
    assert "column id is string in the table, declared long" in message
    assert "tidewater rewrite wdbc" in message
    assert lake.version("silver", "wdbc") == before  # nothing written


def test_a_removed_column_stops_the_run(lake):
    fewer = dataclasses.replace(
        WDBC,
        columns=WDBC.columns[:-1],
        roles=dataclasses.replace(WDBC.roles, numeric=WDBC.roles.numeric[:-1]),
    )
    with pytest.raises(SchemaMismatch, match="fractal_dimension_worst is in the table, no longer"):
        migrate_tables.fn(lake, fewer, ["bronze"])
