"""A dataset that is only a declaration (no loader, no generator) goes from headerless,
space-separated upstream files to a champion and scored days through the CLI, with every
record counted from the bytes that arrived."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cli_on_session_cluster")]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DAYS = ["2024-07-01", "2024-07-02", "2024-07-03"]


def upstream_lines() -> list[str]:
    """The WDBC rows as the upstream writes them: `id diagnosis f1 … f30`, no header."""
    data = load_breast_cancer()
    diagnosis = np.where(data.target == 0, "M", "B")
    return [
        " ".join([str(842300 + i), label, *(f"{v:g}" for v in row)])
        for i, (label, row) in enumerate(zip(diagnosis, data.data, strict=True))
    ]


def test_from_headerless_files_to_a_champion_and_a_scored_day(tmp_path, prefect_api):
    home = tmp_path / "home"
    lines = upstream_lines()
    per_day = np.array_split(np.arange(len(lines)), len(DAYS))
    for ds, rows in zip(DAYS, per_day, strict=True):
        folder = home / "landing" / "wdbc" / f"ds={ds}"
        folder.mkdir(parents=True)
        (folder / "batch-001.data").write_text("\n".join(lines[i] for i in rows) + "\n")
    unlabelled = lines[0].split(" ")
    unlabelled[1] = "?"  # the pathology result is not in yet
    (home / "landing" / "wdbc" / f"ds={DAYS[2]}" / "late.data").write_text(
        " ".join(unlabelled) + "\n"
    )
    env = os.environ | {
        "TIDEWATER_HOME": str(home),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
        "TIDEWATER_BOOTSTRAP_MIN_ROWS": "300",
        "COLUMNS": "200",
    }

    def tidewater(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True)

    trained = tidewater("train", "wdbc", "--start", DAYS[0], "--days", "2")
    assert trained.returncode == 0, trained.stderr
    assert "trained wdbc model v1 (champion)" in trained.stdout

    ran = tidewater("run", "wdbc", "--ds", DAYS[2])
    assert ran.returncode == 0, ran.stderr
    arrived = str(len(per_day[2]) + 1)
    row = next(line for line in ran.stdout.splitlines() if line.startswith(f"│ {DAYS[2]}"))
    cells = [cell.strip().replace(",", "") for cell in row.split("│")[1:-1]]
    landed, bronze, rejected, silver, quarantined, scored = cells[1:7]
    assert landed == bronze == silver == scored == arrived  # every line that arrived
    assert rejected == quarantined == "0"  # ...including the row without its label
    assert "all ok" in row

    status = tidewater("status", "wdbc")
    for ds in DAYS:
        assert ds in status.stdout


def test_an_undeclared_file_kind_fails_the_day_naming_it_and_its_size(tmp_path, prefect_api):
    home = tmp_path / "home"
    folder = home / "landing" / "wdbc" / "ds=2024-07-09"
    folder.mkdir(parents=True)
    (folder / "batch.txt").write_text("1 2 3\n")
    env = os.environ | {
        "TIDEWATER_HOME": str(home),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
    }
    ran = subprocess.run(
        [TIDEWATER, "run", "wdbc", "--ds", "2024-07-09"], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 1
    assert "batch.txt: undeclared file kind (6 bytes)" in ran.stderr
