"""Quarantine replay as an operator runs it: the `tidewater` CLI as a subprocess on a real
Prefect server and Dask cluster, Delta tables on disk."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cli_on_session_cluster")]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DS = "2024-03-05"  # of 8 landed days, the one with the wrong-types file: 12 rows quarantined


def tidewater(*args: str, home: Path, api: str) -> subprocess.CompletedProcess:
    env = os.environ | {"TIDEWATER_HOME": str(home), "PREFECT_API_URL": api, "COLUMNS": "200"}
    return subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # minutes of CLI subprocesses: run by `make test-slow` (CI runs both)
def test_replayed_rows_reach_silver_and_predictions_once_and_the_day_stays_ok(
    tmp_path, prefect_api
):
    from tasks.accounting import check_accounting, count_rows
    from tasks.lake import Lake
    from tasks.ledger import read_ledger

    home = tmp_path / "home"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return tidewater(*args, home=home, api=prefect_api)

    landed = cli("land", "adult", "--start", "2024-03-01", "--days", "8")
    assert landed.returncode == 0, landed.stderr
    ran = cli("run", "adult", "--ds", DS)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    shown = cli("quarantine", "adult", "--ds", DS, "--limit", "0")
    assert shown.returncode == 0, shown.stderr
    listed = cli("quarantine", "adult", "--ds", DS, "--json", "--limit", "0")
    rows = {row["age"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert len(listed.stdout.splitlines()) == 12
    assert all(row["_row_id"] in shown.stdout for row in rows.values())
    fixed = [rows["forty"]["_row_id"], rows["150"]["_row_id"]]
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"_row_id,age\n{fixed[0]},40\n{fixed[1]},50\n")

    replayed = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(fixes))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"replay 2 rows of adult ds={DS} into silver" in replayed.stdout

    lake = Lake(str(home / "lake"))
    ledger = read_ledger(lake, "adult", DS)
    replay = ledger[ledger["stage"] == "replay"].iloc[-1]
    assert replay["details"]["who"] == getpass.getuser()
    assert (replay["rows_in"], replay["rows_out"], replay["rows_diverted"]) == (2, 2, 0)
    champion = ledger[ledger["stage"] == "score"].iloc[-1]["model_version"]
    predicted = lake.read("predictions", "adult", where={"ds": DS, "model_version": champion})
    assert set(fixed) <= set(predicted.column("_row_id").to_pylist())
    ingest = ledger[ledger["stage"] == "ingest"].iloc[-1]
    account = count_rows.fn(lake, "adult", DS, int(ingest["rows_in"]), champion)
    check_accounting.fn(account)
    assert (account.silver, account.quarantine) == (6113 + 2, 12 - 2)

    again = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(fixes))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to replay: 2 already in silver" in again.stdout
    assert len(read_ledger(lake, "adult", DS).query("stage == 'pipeline'")) == 2, "no rescoring"

    status = cli("status", "adult", "--start", DS, "--end", DS)
    assert status.returncode == 0, status.stdout + status.stderr
    row = next(line for line in status.stdout.splitlines() if DS in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    silver, quarantined, scored, stages = cells[4], cells[5], cells[6], cells[10]
    assert (silver, quarantined, scored, stages) == ("6,115", "10", "6,115", "all ok")
