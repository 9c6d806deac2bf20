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
    assert len(attempts) == 1 and version == 0
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
    (log,) = glob.glob(str(tmp_path / "quarantine" / "d" / "_delta_log" / "*.json"))
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
