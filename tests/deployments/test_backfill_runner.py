"""A backfill runs at most max-parallel days at once (the first alone while it trains the
first model), records itself in the ledger with every day's outcome, and refuses to start
while a live backfill covers one of its days; a dead one does not block."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import pytest

from deployments import backfill as runner
from deployments.backfill import Backfill, BackfillOverlaps, DayRun, refuse_overlap, run_backfill
from tasks.lake import Lake
from tasks.ledger import backfill_records, day_status

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]


class ScriptedDays:
    """Days that end on the poll after they start; those in `failing` fail. Records how
    many ran at once."""

    def __init__(self, failing: set[str] = frozenset()):
        self.failing, self.running, self.order, self.running_at_start = failing, set(), [], []

    def start(self, day: DayRun) -> None:
        self.running_at_start.append(len(self.running))
        self.running.add(day.ds)
        self.order.append(day.ds)

    def poll(self, days) -> None:
        for day in days:
            self.running.discard(day.ds)
            if day.ds in self.failing:
                day.state, day.error = "failed", "QuarantineLimitExceeded: 40% > 20%"
            else:
                day.state, day.rows = "succeeded", 100

    def close(self) -> list[str]:
        return sorted(self.running)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(runner, "POLL_SECONDS", 0)


def a_backfill(start: str = DAYS[0], end: str = DAYS[-1], max_parallel: int = 2) -> Backfill:
    days = [DayRun(ds, ("ingest", "validate", "score", "monitor")) for ds in DAYS]
    return Backfill("adult", start, end, "missing", "local", max_parallel, days)


def test_at_most_max_parallel_days_run_at_once_and_the_record_has_every_outcome(tmp_path):
    lake, days = Lake(str(tmp_path)), ScriptedDays(failing={"2024-01-03"})
    backfill = a_backfill(max_parallel=2)
    seen = []
    run_backfill(backfill, lake, days, lambda b: seen.append(b.counts()))
    assert max(days.running_at_start) + 1 == 2 and days.order == DAYS
    assert [day.ds for day in backfill.failed()] == ["2024-01-03"]
    (record,) = backfill_records(lake, "adult")
    assert record["run_id"] == backfill.id and record["status"] == "failed"
    assert record["details"]["who"] and record["details"]["policy"] == "missing"
    outcome = record["details"]["days"]
    assert [outcome[ds]["state"] for ds in DAYS] == ["succeeded"] * 2 + ["failed"] + [
        "succeeded"
    ] * 2
    assert "QuarantineLimitExceeded" in outcome["2024-01-03"]["error"]
    assert record["details"]["counts"] == {"queued": 0, "running": 0, "succeeded": 4, "failed": 1}
    assert record["rows_in"] == 400  # landed on the days that succeeded
    assert seen[-1] == {"queued": 0, "running": 0, "succeeded": 4, "failed": 1}
    assert day_status(lake, "adult") == []  # a backfill is no stage of a day


def test_the_first_day_runs_alone_when_it_trains_the_first_model(tmp_path):
    days = ScriptedDays()
    run_backfill(a_backfill(max_parallel=4), Lake(str(tmp_path)), days, lambda b: None)
    assert days.running_at_start == [0, 1, 2, 3, 0]
    days = ScriptedDays()
    lake = Lake(str(tmp_path))
    run_backfill(a_backfill(max_parallel=4), lake, days, lambda b: None, first_alone=True)
    assert days.running_at_start == [0, 0, 1, 2, 3]


API_BUSY = "PrefectHTTPStatusError: Server error '503 Service Unavailable' for url '.../task_runs/'"


class FlakyDays(ScriptedDays):
    """Days whose first `flaky[ds]` attempts fail with `error[ds]`."""

    def __init__(self, flaky: dict[str, int], errors: dict[str, str]):
        super().__init__()
        self.flaky, self.errors = dict(flaky), errors

    def poll(self, days) -> None:
        super().poll(days)
        for day in days:
            if self.flaky.get(day.ds, 0) > 0:
                self.flaky[day.ds] -= 1
                day.state, day.error = "failed", self.errors[day.ds]


def test_a_day_failed_by_a_busy_prefect_api_runs_again_and_a_real_failure_does_not(tmp_path):
    flaky = {"2024-01-02": 1, "2024-01-03": 5, "2024-01-04": 1}
    errors = {"2024-01-02": API_BUSY, "2024-01-03": API_BUSY, "2024-01-04": "AccountingError: 3"}
    days, lake = FlakyDays(flaky, errors), Lake(str(tmp_path))
    backfill = a_backfill()
    run_backfill(backfill, lake, days, lambda b: None)
    state = {day.ds: (day.state, len(day.retried_after)) for day in backfill.days}
    assert state["2024-01-02"] == ("succeeded", 1)  # reran once, then succeeded
    assert state["2024-01-03"] == ("failed", runner.RETRIES_OF_A_DAY)  # gave up, listed
    assert state["2024-01-04"] == ("failed", 0)  # not an API error: never rerun
    assert days.order.count("2024-01-02") == 2 and days.order.count("2024-01-04") == 1
    (record,) = backfill_records(lake, "adult")
    assert record["details"]["days"]["2024-01-02"]["retried_after"] == [API_BUSY]


def test_an_interrupted_backfill_is_recorded_as_interrupted(tmp_path):
    lake, days = Lake(str(tmp_path)), ScriptedDays()

    def interrupt(backfill):
        if backfill.counts()["running"]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backfill(a_backfill(), lake, days, interrupt)
    (record,) = backfill_records(lake, "adult")
    assert record["status"] == "interrupted"


def record_running(lake: Lake, start: str, end: str, host: str, pid: int) -> None:
    other = Backfill("adult", start, end, "all", "deployment", 2, [], id="0ther0ne", host=host)
    other.pid = pid
    other.record(lake, "running")


def test_a_live_backfill_covering_a_day_refuses_another_naming_it(tmp_path):
    lake = Lake(str(tmp_path))
    record_running(lake, "2024-01-04", "2024-01-09", socket.gethostname(), os.getpid())
    with pytest.raises(BackfillOverlaps, match=r"backfill 0ther0ne of adult 2024-01-04\.\.2024"):
        refuse_overlap(lake, a_backfill())
    refuse_overlap(lake, a_backfill("2024-01-10", "2024-01-12"))  # no shared day


def test_a_dead_backfill_does_not_block(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path))
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    record_running(lake, "2024-01-01", "2024-01-09", socket.gethostname(), dead)
    refuse_overlap(lake, a_backfill())  # its process is gone
    record_running(lake, "2024-01-01", "2024-01-09", "elsewhere", 1)
    with pytest.raises(BackfillOverlaps):  # elsewhere, and its heartbeat is fresh
        refuse_overlap(lake, a_backfill())
    later = datetime.now(UTC) + runner.STALE_AFTER + timedelta(minutes=1)
    monkeypatch.setattr(runner, "datetime", type("Later", (), {"now": lambda tz: later}))
    refuse_overlap(lake, a_backfill())  # elsewhere, silent for longer than STALE_AFTER
