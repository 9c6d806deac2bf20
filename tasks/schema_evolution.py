"""A dataset's declared tables against the lake's: added columns migrate, other changes stop.

delta-rs casts what it is given to a table's existing schema (a column declared as text
into a table of integers is silently parsed), so a changed declaration must be compared with
the tables before anything is written. Columns the declaration adds are added to the table
(Delta schema evolution: older rows read them as null). A column removed or given another
type cannot be migrated in place: the run stops, naming the table, the columns and the
`tidewater rewrite` command that rebuilds the table from its source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from deltalake.schema import Schema

from datasets import Dataset
from tasks import step
from tasks.bronze import bronze_schema
from tasks.labels import labels_schema
from tasks.lake import Lake
from tasks.validation import quarantine_schema, silver_schema

REBUILT_FROM = {
    "bronze": "the landing zone",
    "silver": "bronze",
    "quarantine": "bronze",
    "labels": "the labels feed",
}
"""The tables whose schema a dataset declares, and what each is rebuilt from."""


def declared_schemas(dataset: Dataset) -> dict[str, pa.Schema]:
    """The schema the declaration gives each of the dataset's own tables."""
    bronze = bronze_schema(dataset.columns)
    return {
        "bronze": bronze,
        "silver": silver_schema(dataset),
        "quarantine": quarantine_schema(bronze),
        "labels": labels_schema(dataset),
    }


@dataclass(frozen=True)
class SchemaChange:
    """How a table's schema differs from its declaration."""

    table: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (column, in the table, declared)

    @property
    def additive(self) -> bool:
        return not self.removed and not self.retyped

    def describe(self) -> str:
        parts = [
            f"column {name} is {was} in the table, declared {now}"
            for name, was, now in self.retyped
        ]
        parts += [f"column {name} is in the table, no longer declared" for name in self.removed]
        parts += [f"column {name} is declared, not in the table" for name in self.added]
        return "; ".join(parts)


class SchemaMismatch(RuntimeError):
    """A declared schema changed in a way that cannot migrate a table in place."""


def schema_change(table: str, declared: pa.Schema, existing: Schema) -> SchemaChange:
    """Compare by column name and Delta type (nullability aside)."""
    wanted = {field.name: field.type for field in Schema.from_arrow(declared).fields}
    found = {field.name: field.type for field in existing.fields}
    return SchemaChange(
        table=table,
        added=tuple(name for name in wanted if name not in found),
        removed=tuple(name for name in found if name not in wanted),
        retyped=tuple(
            (name, _type_name(found[name]), _type_name(wanted[name]))
            for name in wanted
            if name in found and found[name] != wanted[name]
        ),
    )


def _type_name(delta_type) -> str:
    return getattr(delta_type, "type", None) or str(delta_type)


def table_changes(lake: Lake, dataset: Dataset, tables: Sequence[str]) -> list[SchemaChange]:
    """The changes between the declaration and each existing table of `tables`."""
    declared = declared_schemas(dataset)
    changes = []
    for table in tables:
        existing = lake.table(table, dataset.name)
        if existing is None:
            continue
        change = schema_change(table, declared[table], existing.schema())
        if change.added or not change.additive:
            changes.append(change)
    return changes


@step(retries=2)
def migrate_tables(lake: Lake, dataset: Dataset, tables: Sequence[str]) -> dict[str, list[str]]:
    """Add declared columns to `tables`; raise `SchemaMismatch` for any other change.
    Returns the columns added per table."""
    changes = table_changes(lake, dataset, tables)
    blocking = [change for change in changes if not change.additive]
    if blocking:
        lines = [
            f"{change.table} ({lake.uri(change.table, dataset.name)}): {change.describe()}"
            for change in blocking
        ]
        rebuilt = ", ".join(sorted({change.table for change in blocking}))
        raise SchemaMismatch(
            f"the declared schema of {dataset.name} no longer matches its tables: "
            + " | ".join(lines)
            + f". Nothing was written. To rebuild {rebuilt} from "
            + ", ".join(sorted({REBUILT_FROM[change.table] for change in blocking}))
            + f" under the new declaration, run: tidewater rewrite {dataset.name}"
        )
    declared = declared_schemas(dataset)
    added = {}
    for change in changes:
        fields = [declared[change.table].field(name) for name in change.added]
        table = lake.table(change.table, dataset.name)
        table.alter.add_columns(Schema.from_arrow(pa.schema(fields)).fields)
        added[change.table] = list(change.added)
    return added
