"""The loop that acts, as an operator runs it: `tidewater demo` on a served Prefect server
with a worker. The drifted days make the monitor emit a retrain request; the retrain
deployment's trigger (an automation applied by `tidewater deploy`) starts the retrain on the
worker; the challenger is shadow-scored, promoted, and the next day scores with it. Then two
requests for one window at once give one challenger, and a rollback is what the next run
scores with."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))


@pytest.fixture
def operator(tmp_path, prefect_api):
    env = os.environ | {
        "TIDEWATER_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
        "TIDEWATER_WORK_POOL": f"pool-{uuid.uuid4().hex[:8]}",
        "COLUMNS": "200",
    }

    def tidewater(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    tidewater.env = env
    yield tidewater
    tidewater("serve", "--stop")


def _registry(env: dict):
    from flows.resources import registry_of
    from flows.settings import Settings

    return registry_of(Settings(home=Path(env["TIDEWATER_HOME"])))


def _lake(env: dict):
    from flows.resources import lake_of
    from flows.settings import Settings

    return lake_of(Settings(home=Path(env["TIDEWATER_HOME"])))


def test_drift_requests_a_retrain_the_automation_runs_it_and_the_challenger_is_promoted(
    operator,
):
    demo = operator("demo", "--days", "8", "--drift-day", "4", "--train-days", "3")
    print(demo.stdout)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout

    requested = re.search(r"ds=(\S+): retrain requested on (\S+) \(event (\S+)\)", out)
    assert requested, out
    started = re.search(r"automation → flow run (\S+) started ([\d.]+) s after the request", out)
    assert started, out
    print(f"latency from the retrain request to the retrain run's start: {started[2]} s")
    assert "gate passed: v2 is the challenger" in out
    assert re.search(r"challenger v2 in shadow: shadow continues", out)
    assert re.search(r"challenger v2 in shadow: promoted to champion", out)

    registry = _registry(operator.env)
    assert registry.alias("adult", "champion") == "v2"
    assert registry.alias("adult", "challenger") is None
    tags = registry.version_tags("adult", "v2")
    assert tags["tidewater.window"] == requested[2]

    from tasks.ledger import day_status, read_ledger

    days = {row["ds"]: row for row in day_status(_lake(operator.env), "adult")}
    assert days["2024-01-01"]["model"] == "v1" and days["2024-01-08"]["model"] == "v2"
    assert days["2024-01-08"]["verdict"] == "ok"
    ledger = read_ledger(_lake(operator.env), "adult")
    assert set(ledger["stage"]) >= {"retrain", "shadow", "promote"}
    shadowed = ledger[ledger["stage"] == "shadow"]
    assert list(shadowed["verdict"]) == ["wait", "promote"]

    # Two requests for one window at once: two triggered runs, one decision.
    from datetime import UTC, datetime

    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.runs import wait_for_triggered_run
    from reports import emit_retrain_request

    window = ["2024-01-06", "2024-01-07"]
    with temporary_settings({PREFECT_API_URL: operator.env["PREFECT_API_URL"]}):
        at = datetime.now(UTC)
        events = [
            emit_retrain_request("adult", window[-1], window, ["test"], "v2", {}) for _ in range(2)
        ]
        EventsWorker.drain_all()
        runs = [wait_for_triggered_run("retrain/adult-retrain", event, at) for event in events]
    assert all(run.succeeded for run in runs), runs
    retrains = read_ledger(_lake(operator.env), "adult")
    decided = retrains[
        (retrains["stage"] == "retrain")
        & retrains["details"].map(lambda d: (d or {}).get("window") == "2024-01-06..2024-01-07")
    ]
    assert len(decided) == 1, "the second request for the window returned the first's outcome"
    challenger = decided.iloc[0]["details"]["outcome"].get("challenger")
    registered = registry.find_versions("adult", {"tidewater.window": "2024-01-06..2024-01-07"})
    assert registered == ([challenger] if challenger else [])

    # Rollback: the champion alias moves back, and the next run scores with it.
    rolled = operator("model", "rollback", "adult")
    assert rolled.returncode == 0, rolled.stderr
    assert registry.alias("adult", "champion") == "v1"
    rerun = operator("run", "adult", "--ds", "2024-01-08")
    assert rerun.returncode == 0, rerun.stderr
    days = {row["ds"]: row for row in day_status(_lake(operator.env), "adult")}
    assert days["2024-01-08"]["model"] == "v1"
