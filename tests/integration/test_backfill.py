"""Backfills as an engineer runs them, on a real Prefect server and worker (`tidewater serve`)
and real Delta tables: days run as flow runs on lanes of the backfill deployment, tagged with the
backfill; a failed day is listed and rerun alone after its fix; a backfill killed midway and
run again converges; an overlapping backfill is refused; `repair` reruns only what failed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tasks.accounting import count_rows
from tasks.lake import Lake
from tasks.ledger import backfill_records, day_status, read_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DAYS = [f"2024-02-0{n}" for n in range(1, 6)]
BAD_DAY = DAYS[2]
KILLED_DAYS = [f"2024-02-{n}" for n in range(10, 15)]  # the killed backfill's days
REPAIRED_DAY = "2024-02-25"


@pytest.fixture(scope="module")
def engineer(tmp_path_factory, prefect_api):
    """`tidewater` with a home of 30 landed days of Adult (about 1,600 rows a day) and the
    services of `tidewater serve` (its worker on a pool of its own); the tests use days
    apart."""
    tmp_path = tmp_path_factory.mktemp("backfill")
    env = os.environ | {
        "TIDEWATER_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
        "TIDEWATER_WORK_POOL": f"pool-{uuid.uuid4().hex[:8]}",
        "TIDEWATER_MAX_QUARANTINE_FRACTION": "0.01",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "COLUMNS": "200",
    }

    def tidewater(*args: str, wait: bool = True, **settings: str):
        command, environment = [TIDEWATER, *args], env | settings
        if not wait:
            return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)

    tidewater.lake = Lake(str(tmp_path / "home" / "lake"))
    tidewater.landing = tmp_path / "home" / "landing" / "adult"
    landed = tidewater("land", "adult", "--start", "2024-02-01", "--days", "30", "--no-bad-files")
    assert landed.returncode == 0, landed.stderr
    served = tidewater("serve")
    assert served.returncode == 0, served.stdout + served.stderr
    yield tidewater
    tidewater("serve", "--stop")


def backfill_id(output: str) -> str:
    return re.search(r"backfill ([0-9a-f]{8}) of adult", output).group(1)


def plant_bad_rows(landing: Path, ds: str) -> Path:
    """A file of 40 rows whose age is not a number: over the 1% quarantine limit."""
    from datasets import adult

    bad = adult.load_adult().iloc[:40].astype(object).assign(age="forty")
    return Path(adult.write_landing_file(bad, str(landing / f"ds={ds}" / "bad-ages.csv"), "csv"))


def assert_every_day_accounted_once(lake: Lake, days: list[str]) -> None:
    for ds in days:
        model = next(r["model"] for r in day_status(lake, "adult") if r["ds"] == ds)
        landed = read_ledger(lake, "adult", ds).query("stage == 'ingest'").iloc[-1]["rows_in"]
        account = count_rows.fn(lake, "adult", ds, int(landed), model)  # raises on duplicates
        assert account.landed == account.bronze + account.rejects
        assert (
            account.bronze
            == account.silver + account.quarantine
            == account.predictions + (account.quarantine)
        )


def test_a_backfill_runs_days_on_the_worker_lists_the_failed_one_and_reruns_it_after_the_fix(
    engineer,
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    bad = plant_bad_rows(engineer.landing, BAD_DAY)
    ran = engineer("backfill", "adult", "--start", DAYS[0], "--end", DAYS[-1],
                   "--max-parallel", "2")  # fmt: skip
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert f"{BAD_DAY} failed: QuarantineLimitExceeded" in ran.stderr
    assert "1 of 5 days failed" in ran.stderr
    identity = backfill_id(ran.stdout)

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"backfill:{identity}"]))
        )
    names = sorted(run.name for run in runs)
    assert [name for name in names if name.startswith("pipeline-")] == [
        f"pipeline-adult-{ds}" for ds in DAYS
    ]
    lanes = [name for name in names if name.startswith(f"backfill-lane-adult-{identity}-")]
    assert 1 <= len(lanes) <= 2 and len(names) == len(DAYS) + len(lanes)  # max-parallel 2
    (record,) = [r for r in backfill_records(engineer.lake, "adult") if r["run_id"] == identity]
    assert record["status"] == "failed"
    assert {ds: day["state"] for ds, day in record["details"]["days"].items()} == {
        ds: "failed" if ds == BAD_DAY else "succeeded" for ds in DAYS
    }
    status = engineer("status", "adult", "--start", DAYS[0], "--end", DAYS[-1])
    assert status.returncode == 1 and BAD_DAY in status.stderr

    bad.unlink()  # the fix: the upstream withdraws its bad file
    planned = engineer("backfill", "adult", "--start", DAYS[0], "--end", DAYS[-1],
                       "--policy", "failed", "--dry-run")  # fmt: skip
    ledger_before = len(read_ledger(engineer.lake, "adult"))
    plan = [
        [cell.strip() for cell in line.split("│")[1:5]]
        for line in planned.stdout.splitlines()
        if "│ 2024-02" in line
    ]
    assert [row[:2] for row in plan] == [[ds, "run" if ds == BAD_DAY else "skip"] for ds in DAYS]
    bad_row = plan[DAYS.index(BAD_DAY)]
    assert bad_row[2].startswith("last validate failed: QuarantineLimitExceeded")
    assert "re-landed since its last ingest" in planned.stdout  # the cell wraps
    assert bad_row[3] == "ingest → validate → score → monitor"  # the landing changed
    assert "1 of 5 days to run (dry run)" in planned.stdout
    assert len(read_ledger(engineer.lake, "adult")) == ledger_before  # a plan writes nothing

    rerun = engineer("backfill", "adult", "--start", DAYS[0], "--end", DAYS[-1],
                     "--policy", "failed")  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    written = read_ledger(engineer.lake, "adult").iloc[ledger_before:]
    assert set(written.loc[written["stage"] == "ingest", "ds"]) == {BAD_DAY}  # only it ran
    assert engineer("status", "adult", "--start", DAYS[0], "--end", DAYS[-1]).returncode == 0
    assert_every_day_accounted_once(engineer.lake, DAYS)

    again = engineer("backfill", "adult", "--start", DAYS[0], "--end", DAYS[-1])
    assert again.returncode == 0 and "0 of 5 days to run" in again.stdout


def test_a_backfill_killed_midway_converges_when_run_again_and_overlaps_are_refused(engineer):
    days = ["--start", KILLED_DAYS[0], "--end", KILLED_DAYS[-1]]
    first = engineer("backfill", "adult", *days, "--max-parallel", "2", wait=False)
    wait_until(lambda: any(record["status"] == "running"
                           and record["details"]["start"] == KILLED_DAYS[0]
                           for record in backfill_records(engineer.lake, "adult")),
               "the backfill did not start within 10 minutes")  # fmt: skip

    overlapping = engineer("backfill", "adult", "--start", KILLED_DAYS[-1], "--end", "2024-02-16")
    assert overlapping.returncode == 1, overlapping.stdout + overlapping.stderr
    assert re.search(
        rf"backfill [0-9a-f]{{8}} of adult {KILLED_DAYS[0]}\.\.{KILLED_DAYS[-1]} .* is running",
        overlapping.stderr.replace("\n", " "),
    ), overlapping.stderr

    wait_until(lambda: any(r["ds"] in KILLED_DAYS for r in day_status(engineer.lake, "adult")),
               "no day of the backfill was done within 10 minutes")  # fmt: skip
    first.send_signal(signal.SIGKILL)  # midway: the flow runs it started go on on the worker
    first.wait()
    again = engineer("backfill", "adult", *days, "--max-parallel", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert engineer("status", "adult", *days).returncode == 0
    assert_every_day_accounted_once(engineer.lake, KILLED_DAYS)
    dry_run = engineer("backfill", "adult", *days, "--dry-run")
    assert dry_run.stdout.count("already succeeded") == len(KILLED_DAYS)


def wait_until(condition, failure: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(1)
