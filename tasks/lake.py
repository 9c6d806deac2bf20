"""Delta Lake IO: a `Lake` names the tables and writes slices atomically and idempotently."""

from __future__ import annotations

import errno
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import (
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction
from pyarrow.dataset import ParquetReadOptions

from tasks.storage import LOCAL, Store

# A column's min/max in the Delta log is cut to this many bytes: one huge landed value
# (kept whole in its row) would otherwise be copied into the log, and every later open of
# the table would read it.
STATS_TRUNCATE_BYTES = 64
# A slice of at least this many rows is written as several files at once (one per core,
# each of at least this many rows) and committed as one.
STAGED_WRITE_ROWS = 100_000

PER_DATASET_TABLES = (
    "bronze",
    "rejects",
    "silver",
    "quarantine",
    "predictions",
    "labels",
    "histograms",
)
SHARED_TABLES = ("metrics", "ledger")
RUN_ID_KEY = "tidewater.run_id"
TXN_KEY = "tidewater.txn"

_SLICE_VALUE = re.compile(r"^[A-Za-z0-9_.:+\-]{1,128}$")


@dataclass(frozen=True)
class StagedFile:
    """A data file written into a table's folder, waiting to be committed."""

    path: str
    size: int
    partition: dict[str, str]
    rows: int
    stats: str


class SliceWriteError(RuntimeError):
    """A slice could not be committed: a lasting cause (disk full, no permission), or
    conflicts and errors on every retry."""


# Storage errors no retry mends: no space, quota, read-only filesystem, no permission.
_LASTING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_LASTING_TEXTS = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                  "Permission denied")  # fmt: skip


class UnreadableTable(RuntimeError):
    """A Delta table's log does not load: the message names the table and the entry."""


def _lasting(error: Exception) -> bool:
    """Whether `error` (an OSError, or delta-rs's text of one) is a lasting storage fault."""
    if isinstance(error, OSError) and error.errno in _LASTING_ERRNOS:
        return True
    return any(text in str(error) for text in _LASTING_TEXTS)


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:500] if text else ''}"


@dataclass(frozen=True)
class Lake:
    """The lake's tables under one root URI (local folder or `s3://...`).

    Per-dataset tables live at `{root}/{table}/{dataset}`; `metrics` and `ledger` are one
    table each for all datasets at `{root}/{table}`. Files are written in row groups of
    `row_group_rows`: the unit a scoring shard is made of.
    """

    root: str
    store: Store = LOCAL
    row_group_rows: int = 128 * 1024
    commit_attempts: int = 8

    def uri(self, table: str, dataset: str | None = None) -> str:
        root = self.root.rstrip("/")
        if table in SHARED_TABLES:
            return f"{root}/{table}"
        if table not in PER_DATASET_TABLES:
            raise ValueError(f"unknown lake table {table!r}")
        if not dataset:
            raise ValueError(f"table {table!r} is per dataset: name the dataset")
        return f"{root}/{table}/{dataset}"

    def _options(self) -> dict[str, str] | None:
        """delta-rs's spelling of the store's options (None for a local root)."""
        return self.store.delta_options(self.root) or None

    def table(self, table: str, dataset: str | None = None, version: int | None = None):
        """The Delta table, or None when it was never written. Raises UnreadableTable,
        naming the table and the damaged log entry, when its log does not load."""
        uri = self.uri(table, dataset)
        try:
            return DeltaTable(uri, version=version, storage_options=self._options())
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as error:
            denied = self.store.refused(uri, error)
            if denied is not None:
                raise denied from None
            if not isinstance(error, DeltaError):
                raise
            raise UnreadableTable(self._damage_report(uri, error)) from error

    def _damage_report(self, uri: str, error: DeltaError) -> str:
        """Which log entry of the table at `uri` does not load: the newest one from which
        the table does not open (it opens at the version before)."""
        fs, root = self.store.filesystem(uri)
        entries = sorted(fs.glob(f"{root}/_delta_log/*.json"))
        versions = [int(entry.rsplit("/", 1)[-1].removesuffix(".json")) for entry in entries]
        damaged = None
        for version in reversed(versions):
            try:
                DeltaTable(uri, version=version, storage_options=self._options())
                break
            except DeltaError:
                damaged = version
        cause = _first_line(error)
        if damaged is None:
            return f"the Delta table {uri} does not load: {cause}"
        return (
            f"the Delta table {uri} does not load: log entry {damaged} "
            f"(_delta_log/{damaged:020d}.json) is damaged ({cause}); the table opens at "
            f"version {damaged - 1}. README: recovering a damaged table"
        )

    def version(self, table: str, dataset: str | None = None) -> int | None:
        dt = self.table(table, dataset)
        return None if dt is None else dt.version()

    def read(
        self,
        table: str,
        dataset: str | None = None,
        where: Mapping[str, str] | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        dictionaries: Sequence[str] = (),
    ) -> pa.Table:
        """Rows of `table` whose columns equal `where` (partition pruning on `ds`). Columns
        in `dictionaries` are read dictionary encoded, as Parquet stores them (a column of
        few distinct values is then typed and checked once per value)."""
        filters = [(name, "=", _checked(value)) for name, value in (where or {}).items()]
        dt = self.table(table, dataset, version)
        if dt is None:
            return pa.table({})
        if not dictionaries:
            return dt.to_pyarrow_table(
                filters=filters or None, columns=list(columns) if columns else None
            )
        options = ParquetReadOptions(dictionary_columns=set(dictionaries))
        rows = dt.to_pyarrow_dataset(partitions=filters or None, parquet_read_options=options)
        return rows.to_table(columns=list(columns) if columns else None)

    def read_batches(
        self,
        table: str,
        dataset: str | None,
        where: Mapping[str, str],
        batch_rows: int,
        dictionaries: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Iterator[pa.Table]:
        """`read` of the rows matching `where`, file after file (of the partitions `where`
        names), about `batch_rows` at a time: memory holds one batch, whatever the size of
        the slice."""
        dt = self.table(table, dataset)
        if dt is None:
            return
        partitioned = set(dt.metadata().partition_columns)
        partition = {name: value for name, value in where.items() if name in partitioned}
        by_row = {name: value for name, value in where.items() if name not in partitioned}
        filters = [(name, "=", _checked(value)) for name, value in partition.items()]
        fs, _ = self.store.filesystem(self.uri(table, dataset))
        schema = pa.schema(dt.schema().to_arrow())
        wanted = list(columns) if columns is not None else schema.names
        schema = pa.schema([schema.field(name) for name in dict.fromkeys([*wanted, *by_row])])
        for uri in dt.file_uris(filters or None):
            with fs.open(uri, "rb") as handle:
                reader = pq.ParquetFile(handle, read_dictionary=list(dictionaries))
                stored = [name for name in schema.names if name in reader.schema_arrow.names]
                for batch in reader.iter_batches(batch_size=batch_rows, columns=stored):
                    rows = _conformed(pa.Table.from_batches([batch]), schema, partition)
                    for name, value in by_row.items():
                        rows = rows.filter(pc.equal(rows.column(name), value))
                    yield rows.select(wanted)

    def replace_slice(
        self,
        table: str,
        dataset: str | None,
        data: pa.Table,
        slice_: Mapping[str, str],
        *,
        run_id: str,
        partition_by: Sequence[str] = ("ds",),
    ) -> int:
        """Replace exactly the rows matching `slice_` by `data` in one atomic commit.

        Every row of `data` must belong to the slice. Concurrent writers of the same slice
        are retried until one commit wins per attempt; the table converges to one copy of
        the slice. Returns the table version holding the slice.
        """
        for name, value in slice_.items():
            column = data.column(name)
            if len(column) and not pc.all(pc.equal(column, value)).as_py():
                raise ValueError(f"rows outside the slice {name}={value!r} in {table}")
        if data.num_rows >= STAGED_WRITE_ROWS and set(slice_) == set(partition_by):
            return self._replace_slice_staged(table, dataset, data, slice_, run_id, partition_by)
        predicate = " AND ".join(f"{name} = '{_checked(v)}'" for name, v in slice_.items())
        slice_key = ",".join(f"{k}={v}" for k, v in slice_.items())
        return self._commit(
            table,
            dataset,
            self._write(
                table,
                dataset,
                data,
                mode="overwrite",
                predicate=predicate,
                partition_by=partition_by,
            ),
            app_id=f"tidewater:{table}:{dataset or ''}:{slice_key}",
            metadata={RUN_ID_KEY: run_id, "tidewater.slice": slice_key},
        )

    def _replace_slice_staged(self, table, dataset, data, slice_, run_id, partition_by) -> int:
        """`replace_slice` of a large slice: written as one file per core at once (pyarrow
        writes outside the GIL), then committed as one, like the scoring workers' files."""
        pieces = max(1, min(os.cpu_count() or 1, data.num_rows // STAGED_WRITE_ROWS))
        size = -(-data.num_rows // pieces)
        chunks = [data.slice(start, size) for start in range(0, data.num_rows, size)]
        unique = [name for name in ("_row_id",) if name in data.column_names]
        with ThreadPoolExecutor(len(chunks)) as pool:
            files = list(
                pool.map(lambda rows: self.stage_file(table, dataset, rows, slice_, unique), chunks)
            )
        return self.commit_files(
            table, dataset, files, data.schema, slice_, run_id=run_id, partition_by=partition_by
        )

    def append(
        self,
        table: str,
        dataset: str | None,
        data: pa.Table,
        *,
        run_id: str,
        partition_by: Sequence[str] = (),
    ) -> int:
        """Append rows in one commit (for the ledger: history, never rewritten)."""
        return self._commit(
            table,
            dataset,
            self._write(
                table,
                dataset,
                data,
                mode="append",
                predicate=None,
                partition_by=partition_by,
            ),
            app_id=f"tidewater:{table}:{dataset or ''}:append:{run_id}",
            metadata={RUN_ID_KEY: run_id},
        )

    def compact(self, table: str, dataset: str | None = None) -> bool:
        """Rewrite the table's small files as few large ones and checkpoint its log, so a
        read opens a few files, not one per append; the rows and their history are
        unchanged. Best effort: False when a concurrent commit won (the next call tries
        again)."""
        dt = self.table(table, dataset)
        if dt is None:
            return False
        try:
            dt.optimize.compact(
                writer_properties=WriterProperties(statistics_truncate_length=STATS_TRUNCATE_BYTES)
            )
            dt.create_checkpoint()
        except (CommitFailedError, DeltaError):
            return False
        return True

    def append_once(
        self,
        table: str,
        dataset: str | None,
        data: pa.Table,
        *,
        key: str,
        run_id: str,
        partition_by: Sequence[str] = ("ds",),
    ) -> int | None:
        """Append rows in one commit carrying the app transaction `key`, unless a commit
        already carried it (a retried append is not duplicated: delta-rs does not refuse a
        repeated transaction by itself). Returns the version written, None when skipped."""
        app_id = f"tidewater:{table}:{dataset or ''}:once:{key}"
        dt = self.table(table, dataset)
        if dt is not None and dt.transaction_version(app_id) is not None:
            return None
        return self._commit(
            table,
            dataset,
            self._write(
                table, dataset, data, mode="append", predicate=None, partition_by=partition_by
            ),
            app_id=app_id,
            metadata={RUN_ID_KEY: run_id},
        )

    def delete_rows(
        self,
        table: str,
        dataset: str | None,
        slice_: Mapping[str, str],
        column: str,
        values: Sequence[str],
        *,
        run_id: str,
    ) -> int | None:
        """Delete the rows of the slice whose `column` is one of `values`, in one commit.
        Returns the version written, None when no row matched (nothing is committed)."""
        if not values or self.table(table, dataset) is None:
            return None
        listed = ", ".join(f"'{_checked(value)}'" for value in sorted(set(values)))
        predicate = " AND ".join(
            [f"{name} = '{_checked(value)}'" for name, value in slice_.items()]
            + [f"{column} IN ({listed})"]
        )

        def delete(properties: CommitProperties) -> None:
            self.table(table, dataset).delete(predicate, commit_properties=properties)

        return self._commit_slice(table, dataset, slice_, delete, run_id, action="delete:")

    def _write(self, table, dataset, data, *, mode, predicate, partition_by):
        """A writer of `data` for `_commit`, which supplies the commit properties."""

        def write(properties: CommitProperties) -> None:
            # The commit that creates a table skips delta-rs's conflict check: if its answer
            # is lost and S3 refuses the retried PUT, delta-rs writes it again as the next
            # version. Data is therefore never committed by the creating commit.
            self.ensure_table(table, dataset, data.schema, partition_by)
            write_deltalake(
                self.uri(table, dataset),
                data,
                mode=mode,
                predicate=predicate,
                partition_by=list(partition_by) or None,
                storage_options=self._options(),
                commit_properties=properties,
                # appended history (the ledger) gains columns as the code grows
                schema_mode="merge" if mode == "append" else None,
                writer_properties=WriterProperties(
                    max_row_group_size=self.row_group_rows,
                    statistics_truncate_length=STATS_TRUNCATE_BYTES,
                ),
            )

        return write

    def _commit(
        self, table, dataset, write: Callable[[CommitProperties], None], *, app_id, metadata
    ):
        """Run `write` with commit properties carrying a fresh app transaction, retrying on
        conflicts; a commit that reports an error although it landed is found in the log."""
        uri = self.uri(table, dataset)
        last_error: Exception | None = None
        for attempt in range(self.commit_attempts):
            txn_version = time.time_ns() // 1000
            properties = CommitProperties(
                custom_metadata={**metadata, TXN_KEY: str(txn_version)},
                app_transactions=[Transaction(app_id=app_id, version=txn_version)],
            )
            try:
                write(properties)
                return self._landed_version(table, dataset, app_id, txn_version)
            except (CommitFailedError, DeltaError, OSError) as error:
                denied = self.store.refused(uri, error)
                if denied is not None:  # no retry mends it, and the log cannot be read
                    raise denied from None
                landed = self._landed_version(table, dataset, app_id, txn_version)
                if landed is not None:
                    return landed
                last_error = error
                if _lasting(error):  # retrying cannot help: say why at once
                    raise SliceWriteError(
                        f"could not commit to {uri}: {_first_line(error)}"
                    ) from error
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise SliceWriteError(
            f"could not commit to {uri} after {self.commit_attempts} attempts; the last "
            f"error: {_first_line(last_error)}"
        ) from last_error

    def stage_file(
        self,
        table: str,
        dataset: str | None,
        data: pa.Table,
        partition: Mapping[str, str],
        unique: Sequence[str] = (),
    ) -> StagedFile:
        """Write `data` (all in `partition`) as a new, uniquely named data file of the table,
        not yet part of it: a later `commit_files` adds it. Unreferenced files (from an
        attempt that never got committed) are invisible and removed by VACUUM. Columns named
        in `unique` (a key) are not dictionary encoded: for distinct values the writer would
        build a dictionary until its page is full and then fall back, which is only work."""
        folder = "/".join(f"{name}={_checked(value)}" for name, value in partition.items())
        path = f"{folder}/part-{uuid.uuid4().hex}.parquet"
        fs, root = self.store.filesystem(self.uri(table, dataset))
        fs.makedirs(f"{root}/{folder}", exist_ok=True)
        body = data.drop_columns([name for name in partition if name in data.column_names])
        dictionary = [name for name in body.column_names if name not in unique]
        with fs.open(f"{root}/{path}", "wb") as handle:
            pq.write_table(
                body,
                handle,
                row_group_size=self.row_group_rows,
                compression="zstd",
                use_dictionary=dictionary,
            )
        stats = json.dumps({"numRecords": data.num_rows})
        return StagedFile(path, fs.size(f"{root}/{path}"), dict(partition), data.num_rows, stats)

    def commit_files(
        self,
        table: str,
        dataset: str | None,
        files: Sequence[StagedFile],
        schema: pa.Schema,
        slice_: Mapping[str, str],
        *,
        run_id: str,
        partition_by: Sequence[str],
    ) -> int:
        """Replace exactly the slice by the staged `files`, in one atomic commit."""
        for file in files:
            if any(file.partition.get(name) != value for name, value in slice_.items()):
                raise ValueError(f"staged file {file.path} is outside the slice {dict(slice_)}")
        self.ensure_table(table, dataset, schema, partition_by)
        now = int(time.time() * 1000)
        actions = [AddAction(f.path, f.size, f.partition, now, True, f.stats) for f in files]
        filters = [(name, "=", _checked(value)) for name, value in slice_.items()]

        def write(properties: CommitProperties) -> None:
            self.table(table, dataset).create_write_transaction(
                actions,
                mode="overwrite",
                schema=schema,
                partition_by=list(partition_by),
                partition_filters=filters,
                commit_properties=properties,
            )

        return self._commit_slice(table, dataset, slice_, write, run_id)

    def _commit_slice(self, table, dataset, slice_, change, run_id, action=""):
        """`_commit` of a change of one slice, under the slice's app id (per action)."""
        slice_key = ",".join(f"{k}={v}" for k, v in slice_.items())
        return self._commit(
            table,
            dataset,
            change,
            app_id=f"tidewater:{table}:{dataset or ''}:{action}{slice_key}",
            metadata={RUN_ID_KEY: run_id, "tidewater.slice": slice_key},
        )

    def ensure_table(
        self, table: str, dataset: str | None, schema: pa.Schema, partition_by: Sequence[str]
    ) -> None:
        """Create the table empty with `schema` if it does not exist yet."""
        if DeltaTable.is_deltatable(self.uri(table, dataset), self._options()):
            return
        try:
            DeltaTable.create(
                self.uri(table, dataset),
                schema,
                mode="ignore",
                partition_by=list(partition_by) or None,
                storage_options=self._options(),
            )
        except (CommitFailedError, DeltaError):
            if self.table(table, dataset) is None:
                raise

    def reset_table(
        self, table: str, dataset: str | None, schema: pa.Schema, partition_by: Sequence[str]
    ) -> int:
        """Empty the table and give it `schema`, in one new version (earlier versions stay
        readable by time travel until vacuumed). Returns the new version."""
        write_deltalake(
            self.uri(table, dataset),
            schema.empty_table(),
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=list(partition_by) or None,
            storage_options=self._options(),
        )
        return self.version(table, dataset)

    def partition_values(self, table: str, dataset: str | None, column: str = "ds") -> list[str]:
        """The distinct values of partition column `column` in the table, sorted."""
        dt = self.table(table, dataset)
        if dt is None:
            return []
        return sorted({part[column] for part in dt.partitions() if part.get(column)})

    def _landed_version(self, table, dataset, app_id, txn_version) -> int | None:
        """The version of the commit carrying our transaction, if it landed. The history's
        numbering is only a hint: delta-rs counts its entries down from the snapshot it
        loaded, and a concurrent writer's commit in between shifts them (seen on S3 with 8
        writers); the log entry itself says which version holds our transaction."""
        dt = self.table(table, dataset)
        if dt is None or dt.transaction_version(app_id) != txn_version:
            return None
        hint = next(
            (int(e["version"]) for e in dt.history(limit=64) if e.get(TXN_KEY) == str(txn_version)),
            dt.version(),
        )
        fs, root = self.store.filesystem(self.uri(table, dataset))
        for version in _nearest_first(hint, dt.version() + 64):
            try:
                entry = fs.cat_file(f"{root}/_delta_log/{version:020d}.json")
            except FileNotFoundError:
                continue
            if _commit_info(entry).get(TXN_KEY) == str(txn_version):
                return version
        return None

    def commit_metadata(self, table: str, dataset: str | None, version: int) -> dict:
        """The custom metadata recorded with commit `version` (e.g. the flow run id)."""
        dt = self.table(table, dataset)
        if dt is None:
            return {}
        for entry in dt.history():
            if int(entry.get("version", -1)) == version:
                return entry
        return {}


def _conformed(rows: pa.Table, schema: pa.Schema, partition: Mapping[str, str]) -> pa.Table:
    """A data file's rows as the table's rows: its partition values added, the columns the
    table gained since the file was written null, in the table's order."""
    count = rows.num_rows
    columns = []
    for field in schema:
        if field.name in partition:
            columns.append(pa.repeat(pa.scalar(partition[field.name], field.type), count))
        elif field.name in rows.column_names:
            columns.append(rows.column(field.name))
        else:
            columns.append(pa.nulls(count, field.type))
    return pa.table(columns, names=schema.names)


class StagingWriter:
    """Stages files of a lake's tables (`Lake.stage_file`) on background threads, one per
    core, while the caller prepares the next rows: memory holds the rows being written (a
    file per core at most) and those being prepared, whatever the size of the slice. Use
    as a context manager; `files(table)` after it closes."""

    def __init__(self, lake: Lake, dataset: str | None, partition: Mapping[str, str]):
        self.lake, self.dataset, self.partition = lake, dataset, dict(partition)
        self.writers = os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.writers)
        self.pending: list[Future] = []
        self.staged: dict[str, list[Future]] = {}

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.pool.shutdown(wait=True)

    def stage(self, table: str, rows: pa.Table) -> None:
        """Write `rows` (keyed by `_row_id`) as a new file of `table` once a writer is free;
        no file for no rows."""
        files = self.staged.setdefault(table, [])
        if not rows.num_rows:
            return
        if len(self.pending) >= self.writers:
            self.pending.pop(0).result()
        written = self.pool.submit(
            self.lake.stage_file, table, self.dataset, rows, self.partition, ("_row_id",)
        )
        self.pending.append(written)
        files.append(written)

    def files(self, table: str) -> list[StagedFile]:
        return [future.result() for future in self.staged.get(table, [])]


def _nearest_first(hint: int, highest: int, reach: int = 64) -> Iterator[int]:
    """hint, hint + 1, hint - 1, hint + 2, ... within [0, highest] and `reach` of hint."""
    yield hint
    for distance in range(1, reach + 1):
        for version in (hint + distance, hint - distance):
            if 0 <= version <= highest:
                yield version


def _commit_info(log_entry: bytes) -> dict:
    """The commitInfo action of a Delta log entry (newline-delimited JSON actions)."""
    for line in log_entry.splitlines():
        action = json.loads(line) if line.strip() else {}
        if "commitInfo" in action:
            return action["commitInfo"]
    return {}


def _checked(value: str) -> str:
    """A slice value safe to put in a Delta predicate (dates, versions, names)."""
    if not isinstance(value, str) or not _SLICE_VALUE.match(value):
        raise ValueError(f"invalid slice value {value!r}")
    return value
