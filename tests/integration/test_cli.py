"""The `tidewater` CLI as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cli_on_session_cluster")]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))


def tidewater(
    *args: str, home: Path, api: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = (
        os.environ
        | {
            "TIDEWATER_HOME": str(home),
            "PREFECT_API_URL": api,
            "TIDEWATER_DASK_WORKERS": "1",
            "COLUMNS": "200",
        }
        | (extra or {})
    )
    return subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # minutes of CLI subprocesses: run by `make test-slow` (CI runs both)
def test_land_run_status(tmp_path, prefect_api):
    home = tmp_path / "home"
    landed = tidewater(
        "land", "adult", "--start", "2024-03-01", "--days", "8", home=home, api=prefect_api
    )
    assert landed.returncode == 0, landed.stderr
    assert "landed 10 files" in landed.stdout

    ran = tidewater("run", "adult", "--ds", "2024-03-02", home=home, api=prefect_api)
    assert ran.returncode == 0, ran.stderr
    assert "2024-03-02" in ran.stdout and "all ok" in ran.stdout

    status = tidewater("status", "adult", home=home, api=prefect_api)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "2024-03-02" in line)
    assert "6,131" in row and "10" in row and "ok" in row


@pytest.mark.slow  # minutes of CLI subprocesses: run by `make test-slow` (CI runs both)
def test_backfill_plans_from_the_ledger_runs_what_is_missing_and_is_idempotent(
    tmp_path, prefect_api
):
    from tasks.lake import Lake
    from tasks.ledger import read_ledger

    home = tmp_path / "home"
    landed = tidewater("land", "adult", "--start", "2024-03-01", "--days", "2",
                       "--no-bad-files", home=home, api=prefect_api)  # fmt: skip
    assert landed.returncode == 0, landed.stderr

    def backfill(*args: str) -> subprocess.CompletedProcess:
        return tidewater("backfill", "adult", "--start", "2024-03-01", "--end", "2024-03-03",
                         "--local", *args, home=home, api=prefect_api)  # fmt: skip

    planned = backfill("--dry-run")
    assert planned.returncode == 0, planned.stderr
    plan = [line.split("│")[1:5] for line in planned.stdout.splitlines() if "│ 2024-03" in line]
    assert [[cell.strip() for cell in row] for row in plan] == [
        ["2024-03-01", "run", "landed, never succeeded", "ingest → validate → score → monitor"],
        ["2024-03-02", "run", "landed, never succeeded", "ingest → validate → score → monitor"],
        ["2024-03-03", "skip", "nothing landed", ""],
    ]
    assert "2 of 3 days to run (dry run)" in planned.stdout
    assert not (home / "lake").exists() or read_ledger(Lake(str(home / "lake")), "adult").empty

    ran = backfill()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    ledger = read_ledger(Lake(str(home / "lake")), "adult")
    assert set(ledger["ds"]) == {"2024-03-01", "2024-03-02"}

    again = backfill()
    assert again.returncode == 0 and "0 of 3 days to run" in again.stdout
    assert len(read_ledger(Lake(str(home / "lake")), "adult")) == len(ledger)


def test_errors_are_clear_and_exit_non_zero(tmp_path, prefect_api):
    home = tmp_path / "home"
    unknown = tidewater("status", "nosuch", home=home, api=prefect_api)
    assert unknown.returncode == 2 and "unknown dataset 'nosuch'" in unknown.stderr

    nothing = tidewater("status", "adult", home=home, api=prefect_api)
    assert nothing.returncode == 0 and "no runs of adult recorded yet" in nothing.stdout

    bad_date = tidewater("run", "adult", "--ds", "2024-13-40", home=home, api=prefect_api)
    assert bad_date.returncode == 2

    # Nothing landed: one line, before any server or cluster starts, and a ledger row.
    missing_day = tidewater("run", "adult", "--ds", "2024-03-01", home=home, api="http://x")
    assert missing_day.returncode == 1
    assert missing_day.stderr.strip().splitlines() == [
        f"error: nothing landed for adult ds=2024-03-01 (no {home}/landing/adult/ds=2024-03-01/)"
    ]
    from tasks.lake import Lake
    from tasks.ledger import read_ledger

    [row] = read_ledger(Lake(str(home / "lake")), "adult").to_dict("records")
    assert (row["ds"], row["stage"], row["status"]) == ("2024-03-01", "ingest", "failed")

    # status exits 1 while a day in range failed, 0 otherwise
    failed = tidewater("status", "adult", "--failed", home=home, api=prefect_api)
    assert failed.returncode == 1 and "2024-03-01" in failed.stdout
    assert "1 of 1 days did not succeed: 2024-03-01" in failed.stderr
    later = tidewater("status", "adult", "--start", "2024-03-02", home=home, api=prefect_api)
    assert later.returncode == 0 and "no runs of adult recorded in that range" in later.stdout

    env_error = subprocess.run(
        [TIDEWATER, "status", "adult"],
        env=os.environ | {"TIDEWATER_MAX_QUARANTINE_FRACTION": "2"},
        capture_output=True,
        text=True,
    )
    assert env_error.returncode == 2 and "invalid TIDEWATER_* settings" in env_error.stderr


def test_doctor_names_what_is_wrong_and_how_to_fix_it(tmp_path):
    import socket

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    landing_under_a_file = tmp_path / "a-file"
    landing_under_a_file.write_text("not a folder")
    doctor = tidewater(
        "doctor",
        home=tmp_path / "home",
        api=dead,
        extra={"TIDEWATER_LANDING_URI": str(landing_under_a_file / "landing")},
    )
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    api = next(line for line in doctor.stdout.splitlines() if "Prefect API" in line)
    assert "fail" in api and "tidewater serve" in doctor.stdout
    landing = next(line for line in doctor.stdout.splitlines() if "storage landing" in line)
    assert "fail" in landing
    lake = next(line for line in doctor.stdout.splitlines() if "storage lake" in line)
    assert "ok" in lake


def _register_two_versions(home: Path) -> None:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from tasks.registry import ModelRegistry

    registry = ModelRegistry(f"sqlite:///{home / 'mlflow.db'}", str(home / "models"))
    for seed in range(2):
        X = np.random.default_rng(seed).random((100, 2))
        booster = xgb.train(
            {"objective": "binary:logistic"}, xgb.DMatrix(X, label=X[:, 0] > 0.5), 2
        )
        registry.register_model(
            {
                "dataset": "adult",
                "created_at": f"2024-01-0{seed + 1}T00:00:00+00:00",
                "objective": "binary:logistic",
                "features": {"numeric": ["a", "b"], "categorical": [], "vocabulary": {}},
                "target": "income",
                "positive_label": ">50K",
                "trained_on": {"version": 3 + seed, "ds": ["2024-01-01", f"2024-01-0{seed + 2}"]},
                "metrics": {"auc": 0.8 + seed / 10},
            },
            bytes(booster.save_raw(raw_format="json")),
            pd.DataFrame({"a": [1.0]}),
        )
    registry.set_alias("adult", "champion", "v1")
    registry.set_alias("adult", "challenger", "v2")


@pytest.mark.slow  # minutes of CLI subprocesses: run by `make test-slow` (CI runs both)
def test_model_list_show_promote_rollback(tmp_path, prefect_api):
    home = tmp_path / "home"
    _register_two_versions(home)

    def run(*args: str) -> subprocess.CompletedProcess:
        return tidewater("model", *args, home=home, api=prefect_api)

    listed = run("list", "adult")
    assert listed.returncode == 0, listed.stderr
    v1 = next(line for line in listed.stdout.splitlines() if "│ v1" in line)
    v2 = next(line for line in listed.stdout.splitlines() if "│ v2" in line)
    assert "champion" in v1 and "2024-01-01..2024-01-02" in v1 and "0.8000" in v1
    assert "challenger" in v2 and "0.9000" in v2

    shown = run("show", "adult")
    assert shown.returncode == 0, shown.stderr
    assert "tidewater-adult v1" in shown.stdout and '"checksum"' in shown.stdout

    promoted = run("promote", "adult", "v2", "--reason", "shadow passed")
    assert promoted.returncode == 0, promoted.stderr
    assert "champion v1 -> v2" in promoted.stdout
    listed = run("list", "adult").stdout
    assert "champion" in next(line for line in listed.splitlines() if "│ v2" in line)
    assert "retired" in next(line for line in listed.splitlines() if "│ v1" in line)

    rolled = run("rollback", "adult")
    assert rolled.returncode == 0, rolled.stderr
    assert "champion v2 -> v1" in rolled.stdout

    from tasks.lake import Lake
    from tasks.ledger import read_ledger

    ledger = read_ledger(Lake(str(home / "lake")), "adult")
    assert list(ledger["stage"]) == ["promote", "rollback"]
    assert ledger["details"][0]["reason"] == "shadow passed"
    assert ledger["details"][1] == {
        "from": "v2",
        "to": "v1",
        "by": "cli",
        "reason": "rolled back from the CLI",
    }

    for bad in (("promote", "adult", "v9"), ("show", "adult", "v9"), ("list", "nosuch")):
        failed = run(*bad)
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
