"""What the ledger says of a day is the latest outcome of each of its stages."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.lake import Lake
from tasks.ledger import LedgerEntry, day_status, record_ended_run, record_entry


def entry(ds: str, stage: str, run: str, status: str = "succeeded", **values) -> LedgerEntry:
    return LedgerEntry("adult", ds, stage, run, status=status, **values)


def test_a_failed_training_is_news_only_until_a_later_one_succeeds(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-01", "ingest", "r1", rows_in=10))
    record_entry(lake, entry("2024-01-01", "train", "r2", "failed", error="too few rows"))
    assert day_status(lake, "adult")[0]["stages"]["train"] == "failed"
    record_entry(lake, entry("2024-01-03", "train", "r3"))
    first = day_status(lake, "adult")[0]
    assert first["ds"] == "2024-01-01" and "train" not in first["stages"]
    assert first["errors"] == {}


def test_a_stage_interrupted_by_a_signal_is_then_recorded_as_cancelled(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-02", "pipeline", "r9", "interrupted", error="signal"))
    record_ended_run(lake, "adult", "2024-01-02", "pipeline", "r9", "cancelled", "Cancelled")
    day = day_status(lake, "adult")[0]
    assert day["stages"]["pipeline"] == "cancelled"
    assert day["errors"]["pipeline"] == "Cancelled"


def test_a_run_its_stage_recorded_is_not_recorded_again(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-02", "pipeline", "r9", "failed", error="ValueError: x"))
    record_ended_run(lake, "adult", "2024-01-02", "pipeline", "r9", "failed", "Failed")
    assert day_status(lake, "adult")[0]["errors"]["pipeline"] == "ValueError: x"


def test_replays_after_the_latest_validate_move_rows_from_quarantined_to_silver(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    ds = "2024-01-05"
    record_entry(lake, entry(ds, "validate", "v1", rows_in=100, rows_out=88, rows_diverted=12))
    record_entry(lake, entry(ds, "replay", "r1", rows_in=5, rows_out=4, rows_diverted=1))
    record_entry(lake, entry(ds, "replay", "r2", rows_in=1, rows_out=1, rows_diverted=0))
    record_entry(lake, entry(ds, "replay", "r3", "failed", rows_in=2, rows_out=2))
    day = day_status(lake, "adult")[0]
    assert (day["silver"], day["quarantined"]) == (93, 7)
    assert day["stages"]["replay"] == "failed", "the latest replay's status is shown"

    # validating the day again rebuilds silver and quarantine from bronze: replays undone
    record_entry(lake, entry(ds, "validate", "v2", rows_in=100, rows_out=88, rows_diverted=12))
    day = day_status(lake, "adult")[0]
    assert (day["silver"], day["quarantined"]) == (88, 12)
    assert list(day["stages"]) == ["validate", "replay"]


def test_a_stage_failing_before_its_commit_claims_no_row_written(tmp_path):
    from tasks.ledger import ledger_stage, read_ledger

    lake = Lake(str(tmp_path / "lake"))
    with (
        pytest.raises(OSError, match="No space left"),
        ledger_stage(lake, "adult", "2024-01-02", "ingest", "r1") as stage,
    ):
        stage.rows_in, stage.rows_out, stage.rows_diverted = 6116, 6106, 10
        raise OSError(28, "No space left on device")  # the bronze commit fails
    with (
        pytest.raises(ValueError, match="limit"),
        ledger_stage(lake, "adult", "2024-01-02", "validate", "r2") as stage,
    ):
        stage.rows_in, stage.rows_out, stage.rows_diverted = 6106, 4000, 2106
        stage.delta_versions = {"silver": 3, "quarantine": 2}  # committed, then the limit
        raise ValueError("quarantine limit exceeded")
    rows = read_ledger(lake, "adult").set_index("stage")
    ingest, validate = rows.loc["ingest"], rows.loc["validate"]
    assert ingest["rows_in"] == 6116  # what it read
    assert pd.isna(ingest["rows_out"]) and pd.isna(ingest["rows_diverted"])  # nothing written
    assert (validate["rows_out"], validate["rows_diverted"]) == (4000, 2106)  # written


def a_dead_pid() -> int:
    import os

    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return child


def test_a_stage_in_progress_is_running_and_one_whose_process_died_is_crashed(tmp_path):
    import os
    import socket

    from tasks.ledger import ledger_stage

    lake = Lake(str(tmp_path / "lake"))
    here = socket.gethostname()
    with ledger_stage(lake, "adult", "2024-01-02", "ingest", "r1"):
        pass
    with ledger_stage(lake, "adult", "2024-01-02", "score", "r1"):
        (day,) = day_status(lake, "adult")  # while the stage runs
        assert day["stages"] == {"ingest": "succeeded", "score": "running"}
        assert day["errors"] == {}
    (day,) = day_status(lake, "adult")
    assert day["stages"] == {"ingest": "succeeded", "score": "succeeded"}

    killed = {"host": here, "pid": a_dead_pid()}  # SIGKILLed mid-scoring: no end recorded
    record_entry(lake, entry("2024-01-03", "score", "r2", "started", details=killed))
    alive = {"host": here, "pid": os.getpid()}
    record_entry(lake, entry("2024-01-04", "score", "r3", "started", details=alive))
    days = {day["ds"]: day for day in day_status(lake, "adult")}
    assert days["2024-01-03"]["stages"] == {"score": "crashed"}
    assert (
        f"by pid {killed['pid']} on {here}, which ended without"
        in days["2024-01-03"]["errors"]["score"]
    )
    assert days["2024-01-04"]["stages"] == {"score": "running"}


def test_a_started_row_says_a_stage_began_not_how_it_ended(tmp_path):
    from tasks.ledger import latest_runs, read_ledger

    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-02", "shadow", "r1", "started", details={}))
    record_entry(lake, entry("2024-01-02", "shadow", "r1", verdict="wait"))
    record_entry(lake, entry("2024-01-03", "shadow", "r2", "started", details={}))
    assert list(read_ledger(lake, "adult")["verdict"]) == ["wait"]  # outcomes only
    assert len(read_ledger(lake, "adult", with_started=True)) == 3
    latest = latest_runs(lake, "adult").set_index("ds")["status"].to_dict()
    assert latest == {"2024-01-02": "succeeded", "2024-01-03": "running"}


def test_a_stage_started_elsewhere_is_crashed_once_stale(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    import tasks.ledger as ledger

    lake = Lake(str(tmp_path / "lake"))
    far = {"host": "another-host", "pid": 1}
    record_entry(lake, entry("2024-01-03", "score", "r2", "started", details=far))
    assert day_status(lake, "adult")[0]["stages"] == {"score": "running"}
    later = datetime.now(UTC) + ledger.STALE_AFTER + ledger.timedelta(minutes=1)
    monkeypatch.setattr(ledger, "datetime", type("Later", (), {"now": lambda tz: later}))
    assert day_status(lake, "adult")[0]["stages"] == {"score": "crashed"}


def test_a_crash_prefect_reports_is_recorded_after_the_started_row(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-02", "pipeline", "r9", "started", details={}))
    record_ended_run(lake, "adult", "2024-01-02", "pipeline", "r9", "crashed", "Crashed")
    day = day_status(lake, "adult")[0]
    assert day["stages"]["pipeline"] == "crashed" and day["errors"]["pipeline"] == "Crashed"


def test_the_ledger_stays_a_few_files_however_many_rows_it_holds(tmp_path):
    from tasks.ledger import COMPACT_EVERY, read_ledger

    lake = Lake(str(tmp_path / "lake"))
    for n in range(COMPACT_EVERY * 2 + 3):
        record_entry(lake, entry(f"2024-01-{n % 28 + 1:02d}", "ingest", f"r{n}", rows_in=n))
    assert len(lake.table("ledger").file_uris()) <= 5  # not one per row: compacted
    ledger = read_ledger(lake, "adult")
    assert sorted(ledger["rows_in"]) == list(range(COMPACT_EVERY * 2 + 3))  # nothing lost


def test_each_backfill_is_its_latest_row_those_rows_oldest_first(tmp_path):
    from tasks.ledger import backfill_records

    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-01", "backfill", "b1", "failed", error="day 3"))
    record_entry(lake, entry("2024-01-05", "backfill", "b2", details={"days": 2}))
    record_entry(lake, entry("2024-01-01", "ingest", "b1"))
    record_entry(lake, entry("2024-01-01", "backfill", "b1", details={"days": 5}))
    record_entry(lake, entry("2024-01-09", "backfill", "b3", "started", details={}))
    records = backfill_records(lake, "adult")
    assert [(r["run_id"], r["status"], r["details"]) for r in records] == [
        ("b2", "succeeded", {"days": 2}),
        ("b1", "succeeded", {"days": 5}),  # b1 resumed after b2 ended: its row is newer
    ]
    assert backfill_records(lake, "other") == []


def test_files_ingested_elsewhere_are_those_of_each_other_days_latest_succeeded_ingest(tmp_path):
    from tasks.ledger import ingested_elsewhere

    def files(*names: str, **extra) -> list[dict]:
        return [{"path": f"p/{n}", "sha256": f"sha-{n}"} | extra for n in names]

    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-01", "ingest", "r1", files=files("old")))
    record_entry(lake, entry("2024-01-01", "ingest", "r2", files=files("a", "b")))
    record_entry(lake, entry("2024-01-01", "ingest", "r3", "failed", files=files("broken")))
    record_entry(lake, entry("2024-01-02", "ingest", "r4", files=files("c")))
    record_entry(lake, entry("2024-01-02", "validate", "r4", files=files("not-an-ingest")))
    skipped = files("dup", same_as="ds=2024-01-01 p/a") + [{"path": "p/unhashed"}]
    record_entry(lake, entry("2024-01-03", "ingest", "r5", files=skipped))
    assert ingested_elsewhere(lake, "adult", "2024-01-02") == {
        "sha-a": "ds=2024-01-01 p/a",
        "sha-b": "ds=2024-01-01 p/b",
    }
    assert ingested_elsewhere(lake, "adult", "2024-01-01") == {"sha-c": "ds=2024-01-02 p/c"}


def test_the_last_succeeded_run_of_a_stage_is_that_of_its_day_and_stage(tmp_path):
    from tasks.ledger import last_succeeded

    lake = Lake(str(tmp_path / "lake"))
    assert last_succeeded(lake, "adult", "2024-01-02", "ingest") is None
    record_entry(lake, entry("2024-01-02", "ingest", "r1", rows_in=1))
    record_entry(lake, entry("2024-01-02", "ingest", "r1b", rows_in=9))
    record_entry(lake, entry("2024-01-02", "ingest", "r2", rows_in=2))
    record_entry(lake, entry("2024-01-02", "ingest", "r3", "failed", rows_in=3))
    record_entry(lake, entry("2024-01-02", "validate", "r4", rows_in=4))
    record_entry(lake, entry("2024-01-03", "ingest", "r5", rows_in=5))
    last = last_succeeded(lake, "adult", "2024-01-02", "ingest")
    assert (last["run_id"], last["rows_in"]) == ("r2", 2)
    assert last_succeeded(lake, "adult", "2024-01-02", "score") is None


def test_a_days_stages_are_their_latest_runs_in_pipeline_order(tmp_path):
    from tasks.ledger import day_stages

    lake = Lake(str(tmp_path / "lake"))
    assert day_stages(lake, "adult", "2024-01-02") == []
    record_entry(lake, entry("2024-01-02", "score", "r1", "failed"))
    record_entry(lake, entry("2024-01-02", "ingest", "r1"))
    record_entry(lake, entry("2024-01-02", "validate", "r1"))
    record_entry(lake, entry("2024-01-02", "score", "r2"))
    record_entry(lake, entry("2024-01-03", "train", "r3"))
    stages = day_stages(lake, "adult", "2024-01-02")
    assert [(s["stage"], s["run_id"], s["status"]) for s in stages] == [
        ("ingest", "r1", "succeeded"),
        ("validate", "r1", "succeeded"),
        ("score", "r2", "succeeded"),
    ]


def test_the_days_a_stage_succeeded_are_those_whose_latest_run_did(tmp_path):
    from tasks.ledger import succeeded_days

    lake = Lake(str(tmp_path / "lake"))
    assert succeeded_days(lake, "adult", "validate") == []
    record_entry(lake, entry("2024-01-03", "validate", "r1"))
    record_entry(lake, entry("2024-01-01", "validate", "r2"))
    record_entry(lake, entry("2024-01-02", "validate", "r3"))
    record_entry(lake, entry("2024-01-02", "validate", "r4", "failed"))
    record_entry(lake, entry("2024-01-04", "ingest", "r5"))
    assert succeeded_days(lake, "adult", "validate") == ["2024-01-01", "2024-01-03"]


def test_a_runs_end_is_recorded_for_its_day_stage_and_run_whatever_else_failed(tmp_path):
    from tasks.ledger import read_ledger

    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-02", "pipeline", "r8", "failed", error="x"))  # another run
    record_entry(lake, entry("2024-01-03", "pipeline", "r9", "failed", error="y"))  # another day
    record_entry(lake, entry("2024-01-02", "score", "r9", "failed", error="z"))  # another stage
    record_ended_run(lake, "adult", "2024-01-02", "pipeline", "r9", "crashed", "C" * 5000)
    rows = read_ledger(lake, "adult", "2024-01-02").to_dict("records")
    [ended] = [r for r in rows if (r["run_id"], r["stage"]) == ("r9", "pipeline")]
    assert ended["status"] == "crashed" and ended["error"] == "C" * 2000  # cut to 2000 chars


def test_an_unknown_final_status_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="unknown status 'finished'"):
        record_ended_run(Lake(str(tmp_path)), "adult", "2024-01-02", "ingest", "r", "finished", "")


def test_a_live_process_of_another_user_counts_as_running(monkeypatch):
    import os
    import socket

    import tasks.ledger as ledger

    def refused(pid, signal):
        assert signal == 0, "probing a process must not signal it"
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(ledger.os, "kill", refused)
    assert ledger.process_alive(socket.gethostname(), os.getpid()) is True


def test_a_days_status_has_each_count_where_its_stage_recorded_it_days_in_order(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-03", "ingest", "r0", rows_in=1, rows_out=1, rows_diverted=0))
    ds = "2024-01-02"
    record_entry(lake, entry(ds, "ingest", "r1", rows_in=10, rows_out=9, rows_diverted=1))
    record_entry(lake, entry(ds, "validate", "r1", rows_in=9, rows_out=7, rows_diverted=2))
    record_entry(lake, entry(ds, "score", "r1", rows_out=7, model_version="v3"))
    record_entry(lake, entry(ds, "labels", "r2", rows_out=5))
    record_entry(lake, entry(ds, "monitor", "r1", verdict="drift", report="r/2024-01-02.html"))
    first, second = day_status(lake, "adult")
    assert second["ds"] == "2024-01-03" and second["silver"] is None
    assert {k: v for k, v in first.items() if k not in ("stages", "errors")} == {
        "ds": ds, "landed": 10, "bronze": 9, "rejected": 1, "silver": 7, "quarantined": 2,
        "scored": 7, "labels": 5, "model": "v3", "verdict": "drift",
        "report": "r/2024-01-02.html",
    }  # fmt: skip
    assert list(first["stages"]) == ["ingest", "validate", "labels", "score", "monitor"]


def test_a_failed_training_stays_news_until_a_training_succeeds_not_any_stage(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    record_entry(lake, entry("2024-01-01", "train", "r1", "failed", error="too few rows"))
    record_entry(lake, entry("2024-01-02", "ingest", "r2"))
    assert day_status(lake, "adult")[0]["stages"] == {"train": "failed"}
    record_entry(lake, entry("2024-01-02", "train", "r3"))
    days = {day["ds"]: day["stages"] for day in day_status(lake, "adult")}
    assert days == {"2024-01-02": {"ingest": "succeeded", "train": "succeeded"}}


def test_a_started_row_names_its_run_host_and_pid(tmp_path):
    import os
    import socket

    from tasks.ledger import ledger_stage, read_ledger

    lake = Lake(str(tmp_path / "lake"))
    with ledger_stage(lake, "adult", "2024-01-02", "score", "r1"):
        (started,) = read_ledger(lake, "adult", with_started=True).to_dict("records")
    assert (started["status"], started["run_id"]) == ("started", "r1")
    assert started["details"] == {"host": socket.gethostname(), "pid": os.getpid()}


def test_a_stage_ended_by_a_signal_reads_interrupted_and_a_long_error_is_cut(tmp_path):
    from tasks.ledger import ledger_stage, read_ledger

    lake = Lake(str(tmp_path / "lake"))
    with (
        pytest.raises(KeyboardInterrupt),
        ledger_stage(lake, "adult", "2024-01-02", "score", "r1"),
    ):
        raise KeyboardInterrupt("Ctrl-C")
    with (
        pytest.raises(ValueError),
        ledger_stage(lake, "adult", "2024-01-03", "score", "r2"),
    ):
        raise ValueError("x" * 3000)
    interrupted, failed = read_ledger(lake, "adult").to_dict("records")
    assert (interrupted["status"], interrupted["error"]) == (
        "interrupted",
        "KeyboardInterrupt: Ctrl-C",
    )
    assert failed["status"] == "failed"
    assert failed["error"] == ("ValueError: " + "x" * 3000)[:2000]


def test_resource_use_adds_up_but_peak_memory_is_the_highest_seen():
    usage = LedgerEntry("adult", "2024-01-02", "score", "r1")
    usage.add_usage({"cpu_seconds": 1.23456, "peak_memory_bytes": 300})
    usage.add_usage({"cpu_seconds": 2.0, "peak_memory_bytes": 200.7})
    assert usage.cpu_seconds == 3.235
    assert usage.peak_memory_bytes == 300 and isinstance(usage.peak_memory_bytes, int)
    fresh = LedgerEntry("adult", "2024-01-02", "score", "r2")
    fresh.add_usage({"peak_memory_bytes": 0.9, "cpu_seconds": 0.5})
    assert (fresh.peak_memory_bytes, fresh.cpu_seconds) == (0, 0.5)
