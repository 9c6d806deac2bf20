"""Turning parsed landed files into the bronze and rejects slices of one partition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from datasets import LandingFormat, row_id, row_ids
from tasks import step
from tasks.lake import Lake
from tasks.landing import FileContent
from tasks.parsing import parse_file

TIMESTAMP = pa.timestamp("us", tz="UTC")


LINEAGE_FIELDS = [
    ("_row_id", pa.string()),
    ("_source", pa.string()),
    ("_line", pa.int64()),
    ("_ingested_at", TIMESTAMP),
    ("_run_id", pa.string()),
]
"""What every bronze and silver row carries about where it came from."""


def bronze_schema(columns: Sequence[str]) -> pa.Schema:
    """Every landed column as text, then lineage, row issues and unexpected columns."""
    return pa.schema(
        [(name, pa.string()) for name in columns]
        + LINEAGE_FIELDS
        + [("_issues", pa.string()), ("_extra", pa.string()), ("ds", pa.string())]
    )


REJECTS_SCHEMA = pa.schema(
    [
        ("_row_id", pa.string()),
        ("_source", pa.string()),
        ("_line", pa.int64()),
        ("raw_text", pa.string()),
        ("error", pa.string()),
        ("_ingested_at", TIMESTAMP),
        ("_run_id", pa.string()),
        ("ds", pa.string()),
    ]
)


class UnreadableFiles(RuntimeError):
    """Landed files the dataset's landing format does not declare: nothing of the day is
    written until they are declared (or removed), so none of their records is lost."""


@dataclass(frozen=True)
class PartitionBatch:
    """A partition's landed content, split: bronze rows, rejects, and what was read."""

    bronze: pa.Table
    rejects: pa.Table
    files: list[dict]
    unreadable: list[str]

    @property
    def landed_rows(self) -> int:
        return self.bronze.num_rows + self.rejects.num_rows


@step
def build_partition(
    contents: Sequence[FileContent],
    dataset: str,
    columns: Sequence[str],
    ds: str,
    run_id: str,
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
) -> PartitionBatch:
    """Parse every file of partition `ds` as `landing` declares and stamp lineage on each
    row and reject; files of an undeclared kind are listed as unreadable, not read."""
    now = datetime.now(UTC)
    schema = bronze_schema(columns)
    pieces: list[pa.Table] = []
    rejects: dict[str, list] = {name: [] for name in REJECTS_SCHEMA.names}
    files, unreadable = [], []
    for content in contents:
        parsed = parse_file(content.file.name, content.data, columns, landing, optional)
        files.append(
            content.receipt()
            | {
                "records": parsed.record_count,
                "rejects": len(parsed.rejects),
                "notes": parsed.notes,
            }
            | ({"error": parsed.unreadable} if parsed.unreadable else {})
        )
        if parsed.unreadable:
            unreadable.append(parsed.unreadable)
        if parsed.record_count:
            pieces.append(_with_lineage(parsed.table, dataset, ds, content))
        for index, reject in enumerate(parsed.rejects):
            key = reject.line if reject.line is not None else f"file-{index}"
            rejects["_row_id"].append(row_id(dataset, ds, content.file.name, key))
            rejects["_source"].append(content.file.uri)
            rejects["_line"].append(reject.line)
            rejects["raw_text"].append(reject.raw_text)
            rejects["error"].append(reject.error)
    count = len(rejects["_row_id"])
    rejects |= {"_ingested_at": [now] * count, "_run_id": [run_id] * count, "ds": [ds] * count}
    bronze = pa.concat_tables(pieces) if pieces else schema.empty_table()
    count = bronze.num_rows
    bronze = pa.table(
        {name: bronze.column(name) for name in schema.names if name in bronze.column_names}
        | {
            "_ingested_at": pa.repeat(pa.scalar(now, TIMESTAMP), count),
            "_run_id": pa.repeat(pa.scalar(run_id), count),
            "ds": pa.repeat(pa.scalar(ds), count),
        }
    ).select(schema.names)
    return PartitionBatch(
        bronze=bronze.cast(schema),
        rejects=pa.Table.from_pydict(rejects, schema=REJECTS_SCHEMA),
        files=files,
        unreadable=unreadable,
    )


def _with_lineage(records: pa.Table, dataset: str, ds: str, content: FileContent) -> pa.Table:
    """A file's records with the `_row_id` and `_source` of each."""
    lines = records.column("_line").to_numpy()
    ids = row_ids(dataset, ds, content.file.name, lines)
    return records.append_column("_row_id", ids).append_column(
        "_source", pa.repeat(pa.scalar(content.file.uri), records.num_rows)
    )


def relanded_changes(previous: Sequence[dict] | None, current: Sequence[dict]) -> dict[str, list]:
    """Files added, removed or changed (by checksum) since the previous ingest of a day."""
    if not previous:
        return {}
    before = {entry["path"]: entry["sha256"] for entry in previous}
    after = {entry["path"]: entry["sha256"] for entry in current}
    changes = {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(p for p in after if p in before and after[p] != before[p]),
    }
    return {kind: paths for kind, paths in changes.items() if paths}


@step(retries=2)
def write_partition(lake: Lake, dataset: str, ds: str, batch: PartitionBatch, run_id: str) -> dict:
    """Replace the day's rejects, then its bronze rows; returns the Delta versions written."""
    where = {"ds": ds}
    return {
        "rejects": lake.replace_slice("rejects", dataset, batch.rejects, where, run_id=run_id),
        "bronze": lake.replace_slice("bronze", dataset, batch.bronze, where, run_id=run_id),
    }
