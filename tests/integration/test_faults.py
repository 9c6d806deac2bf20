"""Faults a user meets, as they meet them: the Prefect server dies under a run (the run
fails fast saying so, and the next command recovers); the CLI is killed after the workers
staged a day's predictions and before it committed them (the day reads crashed, and a rerun
mends it with every row accounted for once)."""

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


@pytest.fixture
def home(tmp_path):
    """The test's TIDEWATER_HOME; the embedded Prefect server its commands start is stopped
    after it."""
    from deployments.server import stop_server

    home = tmp_path / "home"
    yield home
    stop_server(home)


def test_a_run_whose_prefect_server_dies_fails_within_30_s_saying_so(home):
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


KILL_BEFORE_COMMIT = """
import os

if os.environ.get("KILL_BEFORE_COMMIT"):
    import tasks.lake

    commit_files = tasks.lake.Lake.commit_files

    def commit_or_die(self, table, *args, **kwargs):  # the workers staged; the driver dies here
        if table == "predictions":
            os.kill(os.getpid(), 9)
        return commit_files(self, table, *args, **kwargs)

    tasks.lake.Lake.commit_files = commit_or_die
"""


def test_a_cli_killed_between_staging_and_commit_leaves_a_crashed_day_that_a_rerun_mends(
    tmp_path, home
):
    from tasks.accounting import count_rows
    from tasks.ledger import day_status

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_BEFORE_COMMIT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env |= {"TIDEWATER_HOME": str(home), "TIDEWATER_DASK_WORKERS": "1", "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hooks), env.get("PYTHONPATH")]))

    def tidewater(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TIDEWATER, *args], env=env | extra, capture_output=True, text=True, timeout=600
        )

    assert tidewater("land", "adult", "--start", DAYS[0], "--days", "1").returncode == 0
    killed = tidewater("run", "adult", "--ds", DAYS[0], KILL_BEFORE_COMMIT="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    lake = Lake(str(home / "lake"))
    staged = list((home / "lake" / "predictions" / "adult").rglob("part-*.parquet"))
    assert staged and lake.read("predictions", "adult").num_rows == 0  # staged, not committed
    (day,) = day_status(lake, "adult")
    assert day["stages"]["score"] == "crashed" and day["stages"]["pipeline"] == "crashed"
    assert tidewater("status", "adult").returncode == 1

    again = tidewater("run", "adult", "--ds", DAYS[0])
    assert again.returncode == 0, again.stdout + again.stderr
    (day,) = day_status(lake, "adult")
    account = count_rows.fn(lake, "adult", DAYS[0], day["landed"], day["model"])
    assert account.silver == account.predictions == day["scored"]


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs (where this process may mount one; the test skips otherwise)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_day_naming_it_and_a_rerun_after_freeing_space_mends_it(
    home, small_disk
):
    from tasks.accounting import count_rows
    from tasks.ledger import day_status

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env |= {
        "TIDEWATER_HOME": str(home),
        "TIDEWATER_LAKE_URI": str(small_disk / "lake"),
        "TIDEWATER_DASK_WORKERS": "1",
        "COLUMNS": "200",
    }

    def tidewater(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=600
        )

    assert tidewater("land", "adult", "--start", DAYS[0], "--days", "1").returncode == 0
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - 64 * 1024))  # 64 KiB left: a ledger row, not a day
    full = tidewater("run", "adult", "--ds", DAYS[0])
    assert full.returncode == 1
    assert "No space left on device" in full.stderr and "after 8 attempts" not in full.stderr
    assert "Traceback" not in full.stderr, full.stderr

    filler.unlink()
    again = tidewater("run", "adult", "--ds", DAYS[0])
    assert again.returncode == 0, again.stdout + again.stderr
    lake = Lake(str(small_disk / "lake"))
    (day,) = day_status(lake, "adult")
    account = count_rows.fn(lake, "adult", DAYS[0], day["landed"], day["model"])
    assert account.landed == account.bronze + account.rejects
    assert account.silver == account.predictions
