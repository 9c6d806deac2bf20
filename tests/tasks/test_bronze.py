"""A partition's landed files become bronze rows and rejects: every landed record counted
once, each stamped with where it came from; files of an undeclared kind are not read."""

from __future__ import annotations

import hashlib

from datasets import LandingFormat, row_id
from tasks.bronze import build_partition, relanded_changes, write_partition
from tasks.lake import Lake
from tasks.landing import FileContent, LandedFile

COLUMNS = ("a", "b")
DS = "2024-01-01"


def landed(name: str, data: bytes) -> FileContent:
    file = LandedFile(f"mem://landing/t/ds={DS}/{name}", name, len(data))
    return FileContent(file, data, hashlib.sha256(data).hexdigest())


def build(*contents: FileContent):
    return build_partition.fn(list(contents), "t", COLUMNS, DS, "run-1", LandingFormat())


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
    write_partition.fn(lake, "t", DS, build(landed("x.csv", b"a,b\n1,2\n3,4\nbad\n")), "run-1")
    write_partition.fn(lake, "t", DS, build(landed("x.csv", b"a,b\n1,2\n")), "run-2")
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
