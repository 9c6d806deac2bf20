"""What the ledger says of a day is the latest outcome of each of its stages."""

from __future__ import annotations

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
