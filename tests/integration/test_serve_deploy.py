"""The operator's path: `tidewater serve` (Dask cluster, reports server, Prefect worker),
`tidewater deploy` (work pool, deployments from the registry, alert automations), runs of
the daily deployment on the served cluster, a cancelled run in the ledger and `status`, and
alerts posted to a webhook for a failed run and a breached threshold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))


class Webhook:
    """A loopback HTTP endpoint that keeps every body posted to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                received.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, text: str, seconds: float = 90) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [body for body in self.received if text in body]
            if found:
                return found[0]
            time.sleep(0.5)
        raise AssertionError(f"no alert mentioning {text!r}; received: {self.received}")


@pytest.fixture
def operator(tmp_path, prefect_api):
    webhook = Webhook()
    env = os.environ | {
        "TIDEWATER_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
        "TIDEWATER_WORK_POOL": f"pool-{uuid.uuid4().hex[:8]}",
        "TIDEWATER_ALERT_WEBHOOK_URL": webhook.url,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "COLUMNS": "200",
    }

    def tidewater(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=600
        )
        return done

    tidewater.env, tidewater.webhook = env, webhook
    yield tidewater
    tidewater("serve", "--stop")
    webhook.server.shutdown()


def _run_deployment(name: str, ds: str, timeout: float = 300):
    from prefect.deployments import run_deployment

    return run_deployment(name, parameters={"ds": ds}, timeout=timeout)


def _wait_for_state(flow_run_id, states: set[str], seconds: float = 120):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state_type.value in states:
                return run
            time.sleep(0.5)
    raise AssertionError(f"flow run stayed {run.state_type.value}")


def test_serve_deploy_run_cancel_and_alert(operator):
    landed = operator("land", "adult", "--start", "2024-06-01", "--days", "3",
                      "--drift-from", "2024-06-03", "--no-bad-files")  # fmt: skip
    assert landed.returncode == 0, landed.stderr
    served = operator("serve")
    assert served.returncode == 0, served.stderr
    for name in ("Prefect UI", "Dask scheduler", "Reports", "Prefect worker"):
        assert name in served.stdout
    deployed = operator("deploy")
    assert deployed.returncode == 0, deployed.stderr
    assert "pipeline/adult-daily" in deployed.stdout and "retrain/adult-retrain" in deployed.stdout
    assert "trigger: tidewater: retrain adult when requested" in deployed.stdout
    assert "automation: tidewater: run failed" in deployed.stdout

    # The first day runs through the worker on the served cluster (and trains the model).
    first = _run_deployment("pipeline/adult-daily", "2024-06-01")
    assert first.state.is_completed(), first.state.message
    home = Path(operator.env["TIDEWATER_HOME"])
    served_address = json.loads((home / "dask" / "scheduler.json").read_text())["address"]
    status = operator("status", "adult")
    assert "2024-06-01" in status.stdout and "all ok" in status.stdout

    from flows.settings import Settings
    from tasks.lake import Lake
    from tasks.ledger import read_ledger

    lake = Lake(Settings(home=home).lake_uri)
    score = read_ledger(lake, "adult", "2024-06-01").query("stage == 'score'").iloc[-1]
    assert score["details"]["cluster"].startswith(f"Dask scheduler {served_address}")
    assert score["wall_seconds"] > 0 and score["cpu_seconds"] > 0
    assert score["peak_memory_bytes"] > 50 * 2**20

    # The drifted day breaches the drift threshold: an alert reaches the webhook, and the
    # monitoring artifact links the day's report on the reports server.
    drifted = _run_deployment("pipeline/adult-daily", "2024-06-03")
    assert drifted.state.is_completed(), drifted.state.message
    assert "retrain" in operator.webhook.wait_for("tidewater.threshold.breached")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=200)
    monitored = next(a for a in artifact if a.key == "monitor-adult-2024-06-03")
    link = monitored.data.split("[Day report](")[1].split(")")[0]
    assert link.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(link) as response:
        assert response.status == 200 and b"<html" in response.read(2000).lower()

    # A day with nothing landed fails: the alert names the failed run.
    missing = _run_deployment("pipeline/adult-daily", "2024-06-09")
    assert missing.state.is_failed()
    assert "prefect.flow-run.Failed" in operator.webhook.wait_for("pipeline-adult-2024-06-09")

    # An operator cancels a running day: the ledger and `status` show it cancelled.
    pending = _run_deployment("pipeline/adult-daily", "2024-06-02", timeout=0)
    _wait_for_state(pending.id, {"RUNNING"})
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(pending.id, State(type=StateType.CANCELLING), force=True)
    _wait_for_state(pending.id, {"CANCELLED"})
    assert "cancelled: pipeline" in _status_row(operator, "2024-06-02", "cancelled: pipeline")

    # The process running a day dies: the run is crashed, and the ledger and `status` say so.
    doomed = _run_deployment("pipeline/adult-daily", "2024-06-02", timeout=0)
    _wait_for_state(doomed.id, {"RUNNING"})
    _flow_run_process(doomed.id).kill()
    _wait_for_state(doomed.id, {"CRASHED"})
    assert "crashed: pipeline" in _status_row(operator, "2024-06-02", "crashed: pipeline")


def _flow_run_process(flow_run_id) -> psutil.Process:
    """The process a worker started for `flow_run_id` (it carries the id in its env)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in psutil.process_iter():
            try:
                if process.environ().get("PREFECT__FLOW_RUN_ID") == str(flow_run_id):
                    return process
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no process runs flow run {flow_run_id}")


def _status_row(operator, ds: str, expected: str, seconds: float = 60) -> str:
    """The `status` line of `ds` once it shows `expected` (hooks record after the state)."""
    deadline = time.monotonic() + seconds
    while True:
        status = operator("status", "adult")
        row = next((line for line in status.stdout.splitlines() if ds in line), "")
        if expected in row or time.monotonic() > deadline:
            return row
        time.sleep(2)
