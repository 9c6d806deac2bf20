"""The lake on a real S3 endpoint (moto's server on loopback): the same commits, slices and
reconciliation as on disk, through the storage resource, safe with concurrent writers."""

from __future__ import annotations

import multiprocessing

import pyarrow as pa
import pytest

from tasks.lake import Lake
from tasks.storage import Store

pytestmark = pytest.mark.integration

WRITERS, COMMITS_EACH = 8, 5


def _slice(ds: str, rows: int) -> pa.Table:
    ids = [f"{ds}-{i}" for i in range(rows)]
    return pa.table({"_row_id": ids, "value": list(range(rows)), "ds": [ds] * rows})


def _lake(root: str, options: dict[str, str]) -> Lake:
    return Lake(f"{root}/lake", Store.from_options(options, environ={}))


def _replace(lake: Lake, ds: str, rows: int, run_id: str) -> int:
    return lake.replace_slice("silver", "adult", _slice(ds, rows), {"ds": ds}, run_id=run_id)


def test_slices_are_replaced_and_read_back_on_s3(s3_bucket):
    lake = _lake(*s3_bucket)
    first = _replace(lake, "2024-01-01", 10, "r1")
    _replace(lake, "2024-01-02", 5, "r1")
    again = _replace(lake, "2024-01-01", 7, "r2")
    assert again > first
    assert lake.read("silver", "adult", where={"ds": "2024-01-01"}).num_rows == 7
    assert lake.read("silver", "adult").num_rows == 12


def _write_slices(root: str, options: dict[str, str], writer: int) -> list[int]:
    lake = _lake(root, options)
    days = [f"2025-{writer + 1:02d}-{n + 1:02d}" for n in range(COMMITS_EACH)]
    return [_replace(lake, ds, 3 + n, f"writer-{writer}") for n, ds in enumerate(days)]


def test_concurrent_writers_each_commit_once_in_one_unbroken_history(s3_bucket):
    root, options = s3_bucket
    assert _replace(_lake(root, options), "2024-12-31", 1, "seed") == 1  # created at 0
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        versions = pool.starmap(_write_slices, [(root, options, w) for w in range(WRITERS)])
    committed = sorted(v for each in versions for v in each)
    assert committed == list(range(2, WRITERS * COMMITS_EACH + 2))  # no gap, no double
    rows = _lake(root, options).read("silver", "adult").to_pandas()
    per_day = rows.groupby("ds")["_row_id"].agg(["count", "nunique"])
    assert len(per_day) == WRITERS * COMMITS_EACH + 1
    assert (per_day["count"] == per_day["nunique"]).all()  # every slice present once
    for writer in range(WRITERS):
        for n in range(COMMITS_EACH):
            assert per_day.loc[f"2025-{writer + 1:02d}-{n + 1:02d}", "count"] == 3 + n
