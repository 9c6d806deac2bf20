"""Turning parsed landed files into the bronze and rejects slices of one partition."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from datasets import LandingFormat, row_id, row_ids
from tasks import step
from tasks.blocks import BLOCK_BYTES
from tasks.lake import Lake, StagedFile, StagingWriter
from tasks.landing import FileContent
from tasks.parsing import ParsedFile, parse_in_blocks, parse_parquet_in_batches
from tasks.storage import LOCAL, Store

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


def partition_blocks(
    contents: Sequence[FileContent],
    dataset: str,
    columns: Sequence[str],
    ds: str,
    run_id: str,
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
    store: Store = LOCAL,
    block_bytes: int | None = None,
) -> Iterator[PartitionBatch]:
    """Every file of partition `ds` parsed as `landing` declares, a block of whole records
    at a time (`tasks.blocks`): a batch per block, lineage stamped on each row and reject;
    each file's receipt (and why it is unreadable, for a file of an undeclared kind) comes
    in a batch of its own after its blocks."""
    now, block_bytes = datetime.now(UTC), block_bytes or BLOCK_BYTES
    for content in contents:
        records, rejected, notes, unreadable = 0, 0, [], None
        for parsed in _parsed_pieces(content, columns, landing, optional, store, block_bytes):
            if parsed.unreadable:
                unreadable = parsed.unreadable
                continue
            notes += parsed.notes
            yield PartitionBatch(
                bronze=_bronze_rows(parsed.table, columns, dataset, ds, content, now, run_id),
                rejects=_reject_rows(parsed.rejects, rejected, dataset, ds, content, now, run_id),
                files=[],
                unreadable=[],
            )
            records, rejected = records + parsed.record_count, rejected + len(parsed.rejects)
        receipt = content.receipt() | {"records": records, "rejects": rejected, "notes": notes}
        yield PartitionBatch(
            bronze=bronze_schema(columns).empty_table(),
            rejects=REJECTS_SCHEMA.empty_table(),
            files=[receipt | ({"error": unreadable} if unreadable else {})],
            unreadable=[unreadable] if unreadable else [],
        )


def _parsed_pieces(
    content: FileContent,
    columns: Sequence[str],
    landing: LandingFormat | None,
    optional: Sequence[str],
    store: Store,
    block_bytes: int,
) -> Iterator[ParsedFile]:
    """A landed file parsed a piece at a time: text in blocks of whole records, a Parquet
    file larger than a block by batches of rows read from the store."""
    kind = (landing or LandingFormat()).kind_of(content.file.name)
    if kind == "parquet" and content.data is None:
        with store.open(content.file.uri, "rb") as handle:
            yield from parse_parquet_in_batches(handle, columns, landing, optional)
        return
    yield from parse_in_blocks(content.file.name, content.chunks(store, block_bytes), columns,
                               landing, optional, block_bytes)  # fmt: skip


def build_partition(
    contents: Sequence[FileContent],
    dataset: str,
    columns: Sequence[str],
    ds: str,
    run_id: str,
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
) -> PartitionBatch:
    """`partition_blocks` gathered into one batch: the whole partition in memory."""
    blocks = list(partition_blocks(contents, dataset, columns, ds, run_id, landing, optional))
    return PartitionBatch(
        bronze=pa.concat_tables([block.bronze for block in blocks]),
        rejects=pa.concat_tables([block.rejects for block in blocks]),
        files=[receipt for block in blocks for receipt in block.files],
        unreadable=[why for block in blocks for why in block.unreadable],
    )


@dataclass(frozen=True)
class StagedPartition:
    """A partition's bronze rows and rejects written as files of their tables, not yet
    committed (`write_partition` does), and what was read."""

    bronze: list[StagedFile]
    rejects: list[StagedFile]
    files: list[dict]
    unreadable: list[str]

    @property
    def bronze_rows(self) -> int:
        return sum(file.rows for file in self.bronze)

    @property
    def rejected_rows(self) -> int:
        return sum(file.rows for file in self.rejects)

    @property
    def landed_rows(self) -> int:
        return self.bronze_rows + self.rejected_rows


@step
def stage_partition(
    lake: Lake,
    contents: Sequence[FileContent],
    dataset: str,
    columns: Sequence[str],
    ds: str,
    run_id: str,
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
    store: Store = LOCAL,
) -> StagedPartition:
    """`partition_blocks`, each block's bronze rows and rejects written as a file of its
    table while the next block is parsed: memory holds about two blocks, whatever the size
    of the day."""
    files, unreadable = [], []
    with StagingWriter(lake, dataset, {"ds": ds}) as writer:
        for block in partition_blocks(contents, dataset, columns, ds, run_id, landing,
                                      optional, store):  # fmt: skip
            files += block.files
            unreadable += block.unreadable
            writer.stage("bronze", block.bronze)
            writer.stage("rejects", block.rejects)
    return StagedPartition(writer.files("bronze"), writer.files("rejects"), files, unreadable)


def _bronze_rows(records, columns, dataset, ds, content, now, run_id) -> pa.Table:
    """A block's records as bronze rows: text columns, lineage, issues, extras."""
    schema = bronze_schema(columns)
    if records is None or not records.num_rows:
        return schema.empty_table()
    records = _with_lineage(records, dataset, ds, content)
    count = records.num_rows
    return (
        pa.table(
            {name: records.column(name) for name in schema.names if name in records.column_names}
            | {
                "_ingested_at": pa.repeat(pa.scalar(now, TIMESTAMP), count),
                "_run_id": pa.repeat(pa.scalar(run_id), count),
                "ds": pa.repeat(pa.scalar(ds), count),
            }
        )
        .select(schema.names)
        .cast(schema)
    )


def _reject_rows(rejects, before, dataset, ds, content, now, run_id) -> pa.Table:
    """A block's rejects with lineage; `before`: the file's rejects in earlier blocks (a
    reject without a line is keyed by its place in the file)."""
    keys = [
        reject.line if reject.line is not None else f"file-{before + index}"
        for index, reject in enumerate(rejects)
    ]
    count = len(rejects)
    return pa.Table.from_pydict(
        {
            "_row_id": [row_id(dataset, ds, content.file.name, key) for key in keys],
            "_source": [content.file.uri] * count,
            "_line": [reject.line for reject in rejects],
            "raw_text": [reject.raw_text for reject in rejects],
            "error": [reject.error for reject in rejects],
            "_ingested_at": [now] * count,
            "_run_id": [run_id] * count,
            "ds": [ds] * count,
        },
        schema=REJECTS_SCHEMA,
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
def write_partition(
    lake: Lake,
    dataset: str,
    columns: Sequence[str],
    ds: str,
    staged: StagedPartition,
    run_id: str,
) -> dict:
    """Replace the day's rejects, then its bronze rows, by the staged files, each in one
    commit; returns the Delta versions written."""
    where, by_ds = {"ds": ds}, ["ds"]
    return {
        "rejects": lake.commit_files(
            "rejects",
            dataset,
            staged.rejects,
            REJECTS_SCHEMA,
            where,
            run_id=run_id,
            partition_by=by_ds,
        ),  # fmt: skip
        "bronze": lake.commit_files(
            "bronze",
            dataset,
            staged.bronze,
            bronze_schema(columns),
            where,
            run_id=run_id,
            partition_by=by_ds,
        ),  # fmt: skip
    }
