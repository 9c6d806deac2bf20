"""A partition's landed files become bronze rows and rejects: every landed record counted
once, each stamped with where it came from; files of an undeclared kind are not read."""

from __future__ import annotations

import hashlib

from datasets import LandingFormat, row_id
from tasks.bronze import build_partition, relanded_changes, stage_partition, write_partition
from tasks.lake import Lake
from tasks.landing import FileContent, LandedFile

COLUMNS = ("a", "b")
DS = "2024-01-01"


def landed(name: str, data: bytes) -> FileContent:
    file = LandedFile(f"mem://landing/t/ds={DS}/{name}", name, len(data))
    return FileContent(file, data, hashlib.sha256(data).hexdigest())


def build(*contents: FileContent):
    return build_partition(list(contents), "t", COLUMNS, DS, "run-1", LandingFormat())


def ingest(lake: Lake, run_id: str, *contents: FileContent) -> dict:
    """Stage the partition's files and commit them, as the ingest flow does."""
    staged = stage_partition.fn(lake, list(contents), "t", COLUMNS, DS, run_id, LandingFormat())
    return write_partition.fn(lake, "t", COLUMNS, DS, staged, run_id)


def test_every_record_is_a_bronze_row_or_a_reject_with_its_lineage():
    batch = build(landed("x.csv", b"a,b\n1,2\n1,2,3\n\n4,\n"), landed("y.jsonl", b'{"a": 5}\n{\n'))
    assert batch.landed_rows == batch.bronze.num_rows + batch.rejects.num_rows == 5
    bronze = batch.bronze.to_pylist()
    assert [(r["_line"], r["a"], r["b"]) for r in bronze] == [
        (2, "1", "2"),
        (5, "4", ""),  # as landed: validation decides what is null
        (1, "5", None),
    ]
    assert bronze[0]["_row_id"] == row_id("t", DS, "x.csv", 2)
    assert bronze[0]["_source"].endswith("/x.csv") and bronze[0]["_run_id"] == "run-1"
    assert {r["ds"] for r in bronze} == {DS}
    rejects = batch.rejects.to_pylist()
    assert [(r["_line"], r["raw_text"]) for r in rejects] == [(3, "1,2,3"), (2, "{")]
    assert rejects[0]["_row_id"] == row_id("t", DS, "x.csv", 3)
    assert [f["records"] + f["rejects"] for f in batch.files] == [3, 2]


def test_an_undeclared_file_is_listed_unreadable_and_not_read():
    batch = build(landed("notes.txt", b"a,b\n1,2\n"))
    assert batch.landed_rows == 0 and batch.unreadable[0].startswith("notes.txt: undeclared")
    assert batch.files[0]["error"] == batch.unreadable[0]


def test_writing_a_partition_again_replaces_it(tmp_path):
    lake = Lake(str(tmp_path))
    ingest(lake, "run-1", landed("x.csv", b"a,b\n1,2\n3,4\nbad\n"))
    ingest(lake, "run-2", landed("x.csv", b"a,b\n1,2\n"))
    assert lake.read("bronze", "t").num_rows == 1 and lake.read("rejects", "t").num_rows == 0


def test_relanded_files_are_named_added_removed_or_changed():
    before = [{"path": "p/x.csv", "sha256": "1"}, {"path": "p/y.csv", "sha256": "2"}]
    after = [{"path": "p/x.csv", "sha256": "9"}, {"path": "p/z.csv", "sha256": "3"}]
    assert relanded_changes(before, after) == {
        "added": ["p/z.csv"],
        "removed": ["p/y.csv"],
        "changed": ["p/x.csv"],
    }
    assert relanded_changes(None, after) == {} and relanded_changes(after, after) == {}


def test_receipts_stamps_and_a_whole_file_reject_carry_what_the_ledger_needs():
    import gzip
    from datetime import UTC, datetime, timedelta

    good = landed("x.csv", b"a,b\n1,2\n")
    cut = landed("y.csv.gz", gzip.compress(b"a,b\n3,4\n" * 50)[:-30])  # truncated: one reject
    before = datetime.now(UTC)
    batch = build(good, cut)
    receipt = batch.files[0]
    assert receipt["notes"] == [] and "error" not in receipt
    stamps = set(batch.bronze.column("_ingested_at").to_pylist())
    stamps |= set(batch.rejects.column("_ingested_at").to_pylist())
    (stamp,) = stamps  # one instant for the whole partition
    assert before <= stamp <= before + timedelta(minutes=1)
    whole_file = [r for r in batch.rejects.to_pylist() if r["_line"] is None]
    assert [r["_row_id"] for r in whole_file] == [row_id("t", DS, "y.csv.gz", "file-0")]
    assert whole_file[0]["_source"] == cut.file.uri
    assert whole_file[0]["error"].startswith("truncated gzip stream")


def test_the_landing_format_and_optional_columns_are_those_of_the_dataset():
    landing = LandingFormat(aliases={"A": "a"})
    batch = build_partition(
        [landed("x.csv", b"A\n1\n")], "t", COLUMNS, DS, "run-1", landing, optional=("b",)
    )
    (row,) = batch.bronze.to_pylist()
    assert (row["a"], row["b"], row["_issues"]) == ("1", None, None)


def test_writing_a_partition_names_each_table_its_version_and_the_run(tmp_path):
    from tasks.lake import RUN_ID_KEY

    lake = Lake(str(tmp_path))
    versions = ingest(lake, "r7", landed("x.csv", b"a,b\n1,2\nbad\n"))
    assert versions == {
        "rejects": lake.version("rejects", "t"),
        "bronze": lake.version("bronze", "t"),
    }
    for table, version in versions.items():
        assert lake.commit_metadata(table, "t", version)[RUN_ID_KEY] == "r7"


def test_a_day_staged_block_by_block_is_the_day_built_whole_in_one_commit(tmp_path, monkeypatch):
    lines = [b"a,b"] + [b"%d,%d" % (n, n) if n % 5 else b"bad" for n in range(1, 200)]
    content = landed("x.csv", b"\n".join(lines) + b"\n")
    monkeypatch.setattr("tasks.bronze.BLOCK_BYTES", 64)  # many blocks, each with a bad line
    lake = Lake(str(tmp_path))
    staged = stage_partition.fn(lake, [content], "t", COLUMNS, DS, "run-1", LandingFormat())
    assert len(staged.bronze) > 10 and len(staged.rejects) > 10
    versions = write_partition.fn(lake, "t", COLUMNS, DS, staged, "run-1")
    whole = build(content)
    for table, expected in (("bronze", whole.bronze), ("rejects", whole.rejects)):
        written = lake.read(table, "t").drop_columns(["_ingested_at"]).sort_by("_row_id")
        assert (
            written.to_pylist()
            == expected.drop_columns(["_ingested_at"]).sort_by("_row_id").to_pylist()
        )
        assert versions[table] == lake.version(table, "t") == 1  # created, then one commit
    assert staged.files == whole.files


def test_a_parquet_file_larger_than_a_block_is_read_from_the_store_in_batches(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks import parsing
    from tasks.bronze import partition_blocks

    path = tmp_path / "x.parquet"
    rows = 3 * parsing.PARQUET_BATCH_ROWS + 5
    pq.write_table(pa.table({"a": [str(n) for n in range(rows)], "b": ["y"] * rows}), path)
    data = path.read_bytes()
    file = LandedFile(str(path), "x.parquet", len(data))
    not_read = FileContent(file, None, hashlib.sha256(data).hexdigest())  # larger than a block
    blocks = list(partition_blocks([not_read], "t", COLUMNS, DS, "run-1", LandingFormat()))
    bronze = [block.bronze for block in blocks if block.bronze.num_rows]
    assert len(bronze) == 4 and sum(table.num_rows for table in bronze) == rows
    lines = pa.concat_tables(bronze).column("_line").to_pylist()
    assert lines == list(range(1, rows + 1))
    assert blocks[-1].files[0]["records"] == rows and not blocks[-1].files[0]["notes"]
