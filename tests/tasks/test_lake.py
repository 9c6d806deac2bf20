"""Slices are replaced atomically and idempotently, also by concurrent writers."""

from __future__ import annotations

import multiprocessing

import pyarrow as pa
import pytest

from tasks.lake import RUN_ID_KEY, Lake


def day(ds: str, values: list[int]) -> pa.Table:
    return pa.table({"ds": [ds] * len(values), "x": values})


def test_replace_slice_replaces_only_its_slice(tmp_path):
    lake = Lake(str(tmp_path))
    lake.replace_slice("bronze", "d", day("2024-01-01", [1, 2]), {"ds": "2024-01-01"}, run_id="a")
    lake.replace_slice("bronze", "d", day("2024-01-02", [3]), {"ds": "2024-01-02"}, run_id="a")
    version = lake.replace_slice(
        "bronze", "d", day("2024-01-01", [7]), {"ds": "2024-01-01"}, run_id="b"
    )
    rows = lake.read("bronze", "d").sort_by("x").to_pydict()
    assert rows == {"ds": ["2024-01-02", "2024-01-01"], "x": [3, 7]}
    assert lake.commit_metadata("bronze", "d", version)[RUN_ID_KEY] == "b"


def test_a_large_slice_is_written_as_files_at_once_and_committed_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr("tasks.lake.STAGED_WRITE_ROWS", 10)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    lake = Lake(str(tmp_path))
    lake.replace_slice("bronze", "d", day("2024-01-02", [0]), {"ds": "2024-01-02"}, run_id="a")
    for run_id, values in (("a", list(range(35))), ("b", list(range(100, 140)))):
        version = lake.replace_slice(
            "bronze", "d", day("2024-01-01", values), {"ds": "2024-01-01"}, run_id=run_id
        )
        assert lake.commit_metadata("bronze", "d", version)[RUN_ID_KEY] == run_id
    rows = lake.read("bronze", "d", where={"ds": "2024-01-01"}).column("x").to_pylist()
    assert sorted(rows) == list(range(100, 140))
    assert lake.read("bronze", "d", where={"ds": "2024-01-02"}).num_rows == 1
    assert len(lake.table("bronze", "d").file_uris()) == 3 + 1  # a file per core, then ds=01-02
    assert lake.table("bronze", "d").version() == 3  # created empty, then a commit per replace
    assert lake.commit_metadata("bronze", "d", 3)["tidewater.slice"] == "ds=2024-01-01"


def test_a_large_slice_has_a_file_per_full_share_of_rows_keys_not_dictionary_encoded(
    tmp_path, monkeypatch
):
    import pyarrow.parquet as pq

    monkeypatch.setattr("tasks.lake.STAGED_WRITE_ROWS", 10)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    lake = Lake(str(tmp_path))
    rows = day("2024-01-01", list(range(25))).append_column(
        "_row_id", pa.array([f"r{i}" for i in range(25)])
    )
    lake.replace_slice("bronze", "d", rows, {"ds": "2024-01-01"}, run_id="a")
    files = lake.table("bronze", "d").file_uris()
    assert len(files) == 2  # 25 rows: two shares of at least 10
    for file in files:
        meta = pq.ParquetFile(file).metadata
        column = meta.schema.names.index("_row_id")
        assert not any("DICTIONARY" in e for e in meta.row_group(0).column(column).encodings)


def test_a_slice_of_several_keys_replaces_only_itself_each_slice_its_own_transaction(tmp_path):
    lake = Lake(str(tmp_path))
    keys = ("ds", "model_version")

    def predictions(version: str, values: list[int]) -> pa.Table:
        return day("2024-01-01", values).append_column(
            "model_version", pa.array([version] * len(values))
        )

    for version, values in (("v1", [1, 2]), ("v2", [3]), ("v1", [7])):
        lake.replace_slice(
            "predictions", "d", predictions(version, values),
            {"ds": "2024-01-01", "model_version": version}, run_id="r", partition_by=keys,
        )  # fmt: skip
    rows = lake.read("predictions", "d").sort_by("x").to_pydict()
    assert list(zip(rows["model_version"], rows["x"], strict=True)) == [("v2", 3), ("v1", 7)]
    table = lake.table("predictions", "d")
    v1 = table.transaction_version("tidewater:predictions:d:ds=2024-01-01,model_version=v1")
    v2 = table.transaction_version("tidewater:predictions:d:ds=2024-01-01,model_version=v2")
    assert v1 is not None and v2 is not None and v1 != v2


def test_a_table_not_yet_written_has_no_version(tmp_path):
    assert Lake(str(tmp_path)).version("bronze", "d") is None


def test_an_error_is_named_by_its_type_and_its_first_line_cut_at_500_characters():
    from tasks.lake import _first_line

    assert _first_line(ValueError("")) == "ValueError: "
    assert _first_line(OSError("x" * 600 + "\nsecond line")) == "OSError: " + "x" * 500


def test_an_empty_slice_clears_the_day(tmp_path):
    lake = Lake(str(tmp_path))
    lake.replace_slice("bronze", "d", day("2024-01-01", [1]), {"ds": "2024-01-01"}, run_id="a")
    lake.replace_slice("bronze", "d", day("2024-01-01", []), {"ds": "2024-01-01"}, run_id="a")
    assert lake.read("bronze", "d").num_rows == 0


def test_rows_outside_the_slice_are_refused(tmp_path):
    lake = Lake(str(tmp_path))
    with pytest.raises(ValueError, match="rows outside the slice"):
        lake.replace_slice("bronze", "d", day("2024-01-02", [1]), {"ds": "2024-01-01"}, run_id="a")


@pytest.mark.parametrize("value", ["2024-01-01' OR '1'='1", "a b", ""])
def test_hostile_slice_values_are_refused(tmp_path, value):
    with pytest.raises(ValueError, match="invalid slice value"):
        Lake(str(tmp_path)).read("bronze", "d", where={"ds": value})


def _write_many(root: str, worker: int) -> None:
    lake = Lake(root)
    for attempt in range(5):
        values = [worker * 100 + attempt * 10 + i for i in range(3)]
        lake.replace_slice(
            "bronze", "d", day("2024-01-01", values), {"ds": "2024-01-01"}, run_id=f"w{worker}"
        )


def test_concurrent_writers_of_one_slice_converge_to_one_copy(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path), w)) for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    rows = Lake(str(tmp_path)).read("bronze", "d").column("x").to_pylist()
    assert len(rows) == 3
    assert len({value // 10 for value in rows}) == 1, "the slice mixes two writers' rows"


def test_an_append_once_is_not_repeated_by_a_retry(tmp_path):
    lake = Lake(str(tmp_path))
    rows = day("2024-01-01", [1, 2])
    first = lake.append_once("silver", "d", rows, key="replay-1", run_id="r1")
    retried = lake.append_once("silver", "d", rows, key="replay-1", run_id="r1")
    assert first is not None and retried is None
    assert lake.commit_metadata("silver", "d", first)[RUN_ID_KEY] == "r1"
    lake.append_once("silver", "d", day("2024-01-01", [3]), key="replay-2", run_id="r2")
    assert sorted(lake.read("silver", "d").column("x").to_pylist()) == [1, 2, 3]


def test_delete_rows_removes_only_the_named_rows_of_the_slice(tmp_path):
    lake = Lake(str(tmp_path))
    rows = pa.table({"ds": ["2024-01-01"] * 3 + ["2024-01-02"], "id": ["a", "b", "c", "a"]})
    lake.replace_slice("quarantine", "d", rows.slice(0, 3), {"ds": "2024-01-01"}, run_id="v")
    lake.replace_slice("quarantine", "d", rows.slice(3), {"ds": "2024-01-02"}, run_id="v")
    version = lake.delete_rows(
        "quarantine", "d", {"ds": "2024-01-01"}, "id", ["a", "c"], run_id="del"
    )
    assert lake.commit_metadata("quarantine", "d", version)[RUN_ID_KEY] == "del"
    left = lake.read("quarantine", "d").sort_by("ds").to_pydict()
    assert left == {"ds": ["2024-01-01", "2024-01-02"], "id": ["b", "a"]}
    assert (
        lake.delete_rows("quarantine", "d", {"ds": "2024-01-01"}, "id", ["a"], run_id="x") is None
    )
    with pytest.raises(ValueError, match="invalid slice value"):
        lake.delete_rows("quarantine", "d", {"ds": "2024-01-01"}, "id", ["b') OR ('1"], run_id="x")
    assert lake.read("quarantine", "d").num_rows == 2


def failing_writes(monkeypatch, errors: list[Exception], land_first: bool = False) -> list:
    """Make delta-rs's writes raise `errors` in turn (after landing the commit when
    `land_first`: its answer lost), then work; returns the attempts seen."""
    import tasks.lake as lake_module

    real, attempts = lake_module.write_deltalake, []

    def write(*args, **kwargs):
        attempts.append(kwargs["commit_properties"])
        if len(attempts) <= len(errors):
            if land_first:
                real(*args, **kwargs)
            raise errors[len(attempts) - 1]
        return real(*args, **kwargs)

    monkeypatch.setattr(lake_module, "write_deltalake", write)
    return attempts


def test_a_full_disk_fails_the_commit_at_once_naming_the_cause(tmp_path, monkeypatch):
    from tasks.lake import SliceWriteError

    lake = Lake(str(tmp_path))
    attempts = failing_writes(monkeypatch, [OSError(28, "No space left on device")] * 9)
    with pytest.raises(SliceWriteError, match=r"bronze.*OSError: \[Errno 28\] No space left"):
        lake.replace_slice("bronze", "d", day("2024-01-01", [1]), {"ds": "2024-01-01"}, run_id="a")
    assert len(attempts) == 1  # not retried 8 times


def test_a_commit_that_landed_although_it_errored_is_not_written_twice(tmp_path, monkeypatch):
    from deltalake.exceptions import DeltaError

    lake = Lake(str(tmp_path))
    attempts = failing_writes(monkeypatch, [DeltaError("connection reset")], land_first=True)
    version = lake.append("ledger", None, day("2024-01-01", [1, 2]), run_id="a")
    assert len(attempts) == 1 and version == 1  # created empty at version 0
    assert lake.read("ledger").column("x").to_pylist() == [1, 2]


def test_a_conflict_is_retried_and_every_failure_named_when_retries_run_out(tmp_path, monkeypatch):
    from deltalake.exceptions import CommitFailedError

    from tasks.lake import SliceWriteError

    lake = Lake(str(tmp_path))
    attempts = failing_writes(monkeypatch, [CommitFailedError("concurrent transaction")])
    lake.append("ledger", None, day("2024-01-01", [1]), run_id="a")
    assert len(attempts) == 2 and lake.read("ledger").num_rows == 1
    attempts = failing_writes(monkeypatch, [CommitFailedError("concurrent transaction")] * 99)
    with pytest.raises(SliceWriteError, match="after 8 attempts; the last error: CommitFailed"):
        lake.append("ledger", None, day("2024-01-01", [2]), run_id="b")
    assert len(attempts) == 8


def test_a_huge_value_is_kept_whole_in_its_row_but_not_copied_into_the_log(tmp_path):
    import glob
    import os

    huge = "a" * 5_000_000  # its own min and max: written whole into the log before
    lake = Lake(str(tmp_path))
    rows = pa.table({"ds": ["2024-01-01"] * 2, "_row_id": ["r1", "r2"], "raw": [huge, "b"]})
    lake.replace_slice("quarantine", "d", rows, {"ds": "2024-01-01"}, run_id="a")
    for log in glob.glob(str(tmp_path / "quarantine" / "d" / "_delta_log" / "*.json")):
        assert os.path.getsize(log) < 10_000
    assert lake.read("quarantine", "d").sort_by("_row_id").column("raw").to_pylist() == [huge, "b"]


def test_a_damaged_log_entry_is_named_with_its_table_and_version(tmp_path):
    from tasks.lake import UnreadableTable

    lake = Lake(str(tmp_path))
    for n in range(3):
        lake.append("ledger", None, day("2024-01-01", [n]), run_id=f"r{n}")
    entry = tmp_path / "ledger" / "_delta_log" / f"{2:020d}.json"
    entry.write_text(entry.read_text()[:40])  # cut mid-record
    with pytest.raises(UnreadableTable) as raised:
        lake.read("ledger")
    message = str(raised.value)
    assert (
        f"{tmp_path}/ledger does not load: log entry 2 ({entry.relative_to(tmp_path / 'ledger')})"
        in message
    )
    assert "opens at version 1" in message and "Truncated" in message


PREDICTIONS = pa.schema(
    [("_row_id", pa.string()), ("score", pa.float64()), ("ds", pa.string()),
     ("model_version", pa.string())]
)  # fmt: skip


def predictions(ds: str, version: str, ids: list[str]) -> pa.Table:
    scores = [float(n) for n in range(len(ids))]
    return pa.table([ids, scores, [ds] * len(ids), [version] * len(ids)], schema=PREDICTIONS)


SLICE = {"ds": "2024-01-01", "model_version": "v1"}


def commit(lake: Lake, files, slice_=SLICE, run_id="s") -> int:
    return lake.commit_files(
        "predictions", "d", files, PREDICTIONS, slice_, run_id=run_id, partition_by=list(SLICE)
    )


def test_staged_files_are_invisible_until_committed_then_replace_exactly_their_slice(tmp_path):
    lake = Lake(str(tmp_path))
    other = {"ds": "2024-01-01", "model_version": "v2"}
    commit(lake, [lake.stage_file("predictions", "d", predictions(*other.values(), ["z"]), other)],
           other)  # fmt: skip
    first = lake.stage_file("predictions", "d", predictions(*SLICE.values(), ["a", "b"]), SLICE)
    second = lake.stage_file("predictions", "d", predictions(*SLICE.values(), ["c"]), SLICE)
    assert (first.rows, second.rows) == (2, 1) and first.path != second.path
    assert first.path.startswith("ds=2024-01-01/model_version=v1/")
    assert (tmp_path / "predictions" / "d" / first.path).stat().st_size == first.size
    assert lake.read("predictions", "d", where=SLICE).num_rows == 0  # staged: not part of it

    version = commit(lake, [first, second], run_id="score-1")
    rows = lake.read("predictions", "d", where=SLICE).sort_by("_row_id").to_pydict()
    assert rows["_row_id"] == ["a", "b", "c"] and set(rows["model_version"]) == {"v1"}
    assert lake.commit_metadata("predictions", "d", version)[RUN_ID_KEY] == "score-1"

    again = lake.stage_file("predictions", "d", predictions(*SLICE.values(), ["d"]), SLICE)
    commit(lake, [again])
    assert lake.read("predictions", "d", where=SLICE).column("_row_id").to_pylist() == ["d"]
    assert lake.read("predictions", "d", where=other).column("_row_id").to_pylist() == ["z"]


def test_a_staged_file_of_another_slice_is_refused_and_nothing_is_committed(tmp_path):
    lake = Lake(str(tmp_path))
    elsewhere = {"ds": "2024-01-02", "model_version": "v1"}
    staged = lake.stage_file("predictions", "d", predictions(*elsewhere.values(), ["a"]), elsewhere)
    with pytest.raises(ValueError, match="outside the slice"):
        commit(lake, [staged])
    assert lake.read("predictions", "d").num_rows == 0


def test_files_are_written_in_row_groups_of_the_lakes_size_keys_not_dictionary_encoded(tmp_path):
    import pyarrow.parquet as pq

    lake = Lake(str(tmp_path), row_group_rows=2)
    rows = predictions(*SLICE.values(), ["a", "b", "c", "d", "e"])
    staged = lake.stage_file("predictions", "d", rows, SLICE, unique=("_row_id",))
    meta = pq.ParquetFile(tmp_path / "predictions" / "d" / staged.path).metadata
    assert meta.num_rows == 5 and meta.num_row_groups == 3  # a scoring shard's unit
    assert meta.schema.names == ["_row_id", "score"]  # partition values are in the path
    encodings = {meta.schema.names[i]: meta.row_group(0).column(i).encodings for i in range(2)}
    assert not any("DICTIONARY" in e for e in encodings["_row_id"])
    assert any("DICTIONARY" in e for e in encodings["score"])
    assert meta.row_group(0).column(1).compression == "ZSTD"

    lake.replace_slice("bronze", "d", day("2024-01-01", [1, 2, 3]), {"ds": "2024-01-01"},
                       run_id="a")  # fmt: skip
    (written,) = lake.table("bronze", "d").file_uris()
    assert pq.ParquetFile(written).metadata.num_row_groups == 2


def test_ensure_table_creates_it_empty_once(tmp_path):
    lake = Lake(str(tmp_path))
    lake.ensure_table("predictions", "d", PREDICTIONS, partition_by=list(SLICE))
    assert lake.version("predictions", "d") == 0
    assert lake.read("predictions", "d").schema == PREDICTIONS
    assert lake.table("predictions", "d").metadata().partition_columns == list(SLICE)
    lake.ensure_table("predictions", "d", PREDICTIONS, partition_by=list(SLICE))
    assert lake.version("predictions", "d") == 0


def test_a_table_another_writer_created_meanwhile_is_used_and_a_failed_creation_raised(
    tmp_path, monkeypatch
):
    from deltalake.exceptions import CommitFailedError

    import tasks.lake as lake_module

    lake, real = Lake(str(tmp_path)), lake_module.DeltaTable.create

    def created_by_another_writer(*args, **kwargs):
        real(*args, **kwargs)  # the other writer's commit wins ...
        raise CommitFailedError("version 0 already exists")  # ... and ours conflicts

    monkeypatch.setattr(lake_module.DeltaTable, "create", created_by_another_writer)
    lake.ensure_table("predictions", "d", PREDICTIONS, partition_by=list(SLICE))
    assert lake.version("predictions", "d") == 0

    def refused(*args, **kwargs):
        raise CommitFailedError("refused")

    monkeypatch.setattr(lake_module.DeltaTable, "create", refused)
    with pytest.raises(CommitFailedError):
        lake.ensure_table("predictions", "e", PREDICTIONS, partition_by=list(SLICE))


def test_reset_table_empties_it_with_the_new_schema_and_keeps_the_old_version(tmp_path):
    lake = Lake(str(tmp_path))
    lake.replace_slice("bronze", "d", day("2024-01-01", [1, 2]), {"ds": "2024-01-01"}, run_id="a")
    schema = pa.schema([("x", pa.string()), ("y", pa.string()), ("ds", pa.string())])
    version = lake.reset_table("bronze", "d", schema, partition_by=["ds"])
    assert version == 2 == lake.version("bronze", "d")  # created empty, written, reset
    assert lake.read("bronze", "d").num_rows == 0 and lake.read("bronze", "d").schema == schema
    assert lake.table("bronze", "d").metadata().partition_columns == ["ds"]
    assert lake.read("bronze", "d", version=1).column("x").to_pylist() == [1, 2]


def test_partition_values_are_the_days_a_table_holds_sorted(tmp_path):
    lake = Lake(str(tmp_path))
    assert lake.partition_values("bronze", "d") == []
    for ds in ("2024-01-03", "2024-01-01", "2024-01-02"):
        lake.replace_slice("bronze", "d", day(ds, [1]), {"ds": ds}, run_id="a")
    lake.replace_slice("bronze", "d", day("2024-01-02", []), {"ds": "2024-01-02"}, run_id="a")
    assert lake.partition_values("bronze", "d") == ["2024-01-01", "2024-01-03"]


def test_a_slice_is_read_in_batches_file_after_file_as_the_table_now_is(tmp_path):
    lake = Lake(str(tmp_path), row_group_rows=1024)
    where = {"ds": "2024-01-01"}
    assert list(lake.read_batches("bronze", "d", where, batch_rows=1500)) == []
    lake.replace_slice("bronze", "d", day("2024-01-01", list(range(5000))), where, run_id="a")
    lake.replace_slice("bronze", "d", day("2024-01-02", [3]), {"ds": "2024-01-02"}, run_id="a")
    batches = list(lake.read_batches("bronze", "d", where, batch_rows=1500))
    assert [batch.num_rows for batch in batches] == [1500, 1500, 1500, 500]
    rows = pa.concat_tables(batches)
    assert sorted(rows.column("x").to_pylist()) == list(range(5000))
    assert set(rows.column("ds").to_pylist()) == {"2024-01-01"}
    lake.append("bronze", "d", day("2024-01-01", [7]).append_column("y", pa.array(["new"])),
                run_id="b", partition_by=["ds"])  # fmt: skip
    rows = pa.concat_tables(lake.read_batches("bronze", "d", where, batch_rows=10_000))
    assert set(rows.column_names) == {"x", "ds", "y"}  # the file written before has no y
    assert sorted(rows.column("y").drop_null().to_pylist()) == ["new"] and rows.num_rows == 5001
    only = pa.concat_tables(lake.read_batches("bronze", "d", where, 10_000, columns=["y", "x"]))
    assert only.column_names == ["y", "x"] and only.num_rows == 5001
    assert only.column("x").to_pylist() == rows.column("x").to_pylist()
    x_is_7 = lake.read_batches("bronze", "d", where | {"x": 7}, 10_000, columns=["y"])
    assert sorted(pa.concat_tables(x_is_7).column("y").to_pylist(), key=str) == [None, "new"]


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Access denied by the bucket policy"),  # lasting by its errno
        OSError(5, "Generic error: Read-only file system (os error 30)"),  # delta-rs's text
    ],
)
def test_a_lasting_storage_fault_fails_at_once_whether_told_by_errno_or_text(
    tmp_path, monkeypatch, error
):
    from tasks.lake import SliceWriteError

    attempts = failing_writes(monkeypatch, [error] * 9)
    with pytest.raises(SliceWriteError, match="could not commit to"):
        Lake(str(tmp_path)).append("ledger", None, day("2024-01-01", [1]), run_id="a")
    assert len(attempts) == 1


def test_a_connection_reset_is_retried_not_taken_for_a_lasting_fault(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path))
    attempts = failing_writes(monkeypatch, [ConnectionResetError(104, "Connection reset")])
    lake.append("ledger", None, day("2024-01-01", [1]), run_id="a")
    assert len(attempts) == 2 and lake.read("ledger").num_rows == 1


def test_the_log_records_each_committed_files_rows_and_when_it_was_added(tmp_path):
    import time

    lake = Lake(str(tmp_path))
    staged = [
        lake.stage_file("predictions", "d", predictions(*SLICE.values(), ids), SLICE)
        for ids in (["a", "b"], ["c"])
    ]
    commit(lake, staged)
    added = pa.table(lake.table("predictions", "d").get_add_actions(flatten=True))
    by_path = {row["path"]: row for row in added.to_pylist()}
    assert [by_path[f.path]["num_records"] for f in staged] == [2, 1]  # statistics: row counts
    assert [by_path[f.path]["size_bytes"] for f in staged] == [f.size for f in staged]
    now_ms = time.time() * 1000
    assert all(now_ms - 60_000 < row["modification_time"] <= now_ms for row in by_path.values())


@pytest.mark.parametrize("dictionaries", [(), ("y",)], ids=["plain", "dictionaries"])
def test_a_read_takes_one_day_and_the_columns_asked_for(tmp_path, dictionaries):
    lake = Lake(str(tmp_path))
    for ds, values in (("2024-01-01", [1, 2]), ("2024-01-02", [3])):
        rows = day(ds, values).append_column("y", pa.array(["a"] * len(values)))
        lake.replace_slice("bronze", "d", rows, {"ds": ds}, run_id="a")
    read = lake.read(
        "bronze", "d", where={"ds": "2024-01-01"}, columns=["y"], dictionaries=dictionaries
    )
    assert read.column_names == ["y"] and read.num_rows == 2  # bronze's text, as validate reads it
    assert pa.types.is_dictionary(read.schema.field("y").type) == bool(dictionaries)
    whole = lake.read("bronze", "d", dictionaries=dictionaries)
    assert whole.num_rows == 3 and set(whole.column_names) == {"ds", "x", "y"}


def test_compacting_a_table_not_yet_written_does_nothing(tmp_path):
    lake = Lake(str(tmp_path))
    assert lake.compact("ledger") is False
    lake.replace_slice("bronze", "d", day("2024-01-01", [1]), {"ds": "2024-01-01"}, run_id="a")
    assert lake.compact("bronze", "d") is True
