"""Faults a user meets, as they meet them: the Prefect server dies under a run (the run
fails fast saying so, and the next command recovers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.lake import Lake
from tasks.ledger import read_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DAYS = ["2024-05-01", "2024-05-02"]


def test_a_run_whose_prefect_server_dies_fails_within_30_s_saying_so(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env |= {"TIDEWATER_HOME": str(home), "TIDEWATER_DASK_WORKERS": "1", "COLUMNS": "200"}

    def tidewater(*args: str) -> subprocess.CompletedProcess:
        command = [TIDEWATER, *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    assert tidewater("land", "adult", "--start", DAYS[0], "--days", "2").returncode == 0
    first = tidewater("run", "adult", "--ds", DAYS[0])  # the embedded server starts with it
    assert first.returncode == 0, first.stderr
    lake = Lake(str(home / "lake"))

    running = subprocess.Popen(
        [TIDEWATER, "run", "adult", "--ds", DAYS[1]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and running.poll() is None:
        stages = set(read_ledger(lake, "adult", DAYS[1])["stage"])
        if "validate" in stages:  # mid-run
            break
        time.sleep(0.5)
    assert running.poll() is None, "the run ended before the server could be killed"
    server = json.loads((home / "prefect" / "server.json").read_text())
    os.kill(server["pid"], signal.SIGKILL)
    killed = time.monotonic()
    out, err = running.communicate(timeout=300)
    took = time.monotonic() - killed
    assert running.returncode == 1, out + err
    assert took < 30, f"the run took {took:.0f} s to fail after the server died"
    assert "is gone" in err and "Traceback" not in err, err
    assert len(err.splitlines()) < 40, err

    again = tidewater("run", "adult", "--ds", DAYS[1])  # starts the server again
    assert again.returncode == 0, again.stdout + again.stderr
