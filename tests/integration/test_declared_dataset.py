"""A dataset that is only a declaration (no loader, no generator) goes from headerless,
space-separated upstream files to a champion and scored days through the CLI, with every
record counted from the bytes that arrived."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandera.pandas as pandera
import pytest
from pandera.typing import Series
from sklearn.datasets import load_breast_cancer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cli_on_session_cluster")]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DAYS = ["2024-07-01", "2024-07-02", "2024-07-03"]


def upstream_lines(labelled: bool = True) -> list[str]:
    """The WDBC rows as the upstream writes them: `id diagnosis f1 … f30`, no header;
    `diagnosis` is `?` where the pathology result is not in yet."""
    data = load_breast_cancer()
    diagnosis = np.where(data.target == 0, "M", "B") if labelled else ["?"] * len(data.target)
    return [
        " ".join([str(842300 + i), label, *(f"{v:g}" for v in row)])
        for i, (label, row) in enumerate(zip(diagnosis, data.data, strict=True))
    ]


def pathology_results() -> str:
    """The labels feed's file: `id,diagnosis` with a header."""
    data = load_breast_cancer()
    rows = [f"{842300 + i},{'M' if y == 0 else 'B'}" for i, y in enumerate(data.target)]
    return "id,diagnosis\n" + "\n".join(rows) + "\n"


def cli(home: Path, prefect_api: str, **extra: str):
    env = os.environ | {
        "TIDEWATER_HOME": str(home),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
        "TIDEWATER_BOOTSTRAP_MIN_ROWS": "300",
        "COLUMNS": "200",
    }

    def tidewater(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([TIDEWATER, *args], env=env | extra, capture_output=True, text=True)

    return tidewater


def land_features(home: Path, lines: list[str]) -> list[np.ndarray]:
    per_day = np.array_split(np.arange(len(lines)), len(DAYS))
    for ds, rows in zip(DAYS, per_day, strict=True):
        folder = home / "landing" / "wdbc" / f"ds={ds}"
        folder.mkdir(parents=True)
        (folder / "batch-001.data").write_text("\n".join(lines[i] for i in rows) + "\n")
    return per_day


@pytest.mark.slow  # minutes of CLI subprocesses: run by `make test-slow` (CI runs both)
def test_from_headerless_files_to_a_champion_and_a_scored_day(tmp_path, prefect_api):
    home = tmp_path / "home"
    lines = upstream_lines()
    per_day = land_features(home, lines)
    unlabelled = lines[0].split(" ")
    unlabelled[1] = "?"  # the pathology result is not in yet
    (home / "landing" / "wdbc" / f"ds={DAYS[2]}" / "late.data").write_text(
        " ".join(unlabelled) + "\n"
    )
    tidewater = cli(home, prefect_api)
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


@pytest.mark.slow  # minutes of CLI subprocesses: run by `make test-slow` (CI runs both)
def test_labels_that_land_later_make_the_first_model(tmp_path, prefect_api):
    home = tmp_path / "home"
    land_features(home, upstream_lines(labelled=False))
    tidewater = cli(home, prefect_api)

    refused = tidewater("train", "wdbc", "--start", DAYS[0], "--days", "2")
    assert refused.returncode == 1
    assert "need both classes of 'diagnosis'" in refused.stderr

    results = home / "landing" / "wdbc-labels" / f"ds={DAYS[2]}"
    results.mkdir(parents=True)
    (results / "results.csv").write_text(pathology_results() + "842300,\n")  # one unusable
    trained = tidewater("train", "wdbc", "--start", DAYS[0], "--days", "2")
    assert trained.returncode == 0, trained.stderr
    assert "trained wdbc model v1 (champion)" in trained.stdout
    status = tidewater("status", "wdbc")
    row = next(line for line in status.stdout.splitlines() if line.startswith(f"│ {DAYS[2]}"))
    cells = [cell.strip().replace(",", "") for cell in row.split("│")[1:-1]]
    assert cells[7] == "569"  # usable labels; the unusable line is kept in the labels table


def test_a_changed_type_stops_the_day_until_rewrite_rebuilds_the_tables(settings, monkeypatch):
    import datasets
    from flows.ingest import ingest
    from flows.resources import lake_of
    from flows.rewrite import rewrite
    from flows.validate import validate
    from tasks.schema_evolution import SchemaMismatch

    land_features(settings.home, upstream_lines())
    ingest("wdbc", DAYS[0])
    validate("wdbc", DAYS[0])
    lake = lake_of(settings)
    silver_version = lake.version("silver", "wdbc")

    class IntegerIds(datasets.get_dataset("wdbc").schema):
        id: Series[int] = pandera.Field(ge=0)

    declared = {"wdbc": dataclasses.replace(datasets.get_dataset("wdbc"), schema=IntegerIds)}
    monkeypatch.setattr(datasets, "_registry", lambda: declared)

    with pytest.raises(SchemaMismatch, match="tidewater rewrite wdbc"):
        validate("wdbc", DAYS[0])
    assert lake.version("silver", "wdbc") == silver_version  # nothing written

    assert rewrite("wdbc") == {"silver": [DAYS[0]], "quarantine": [DAYS[0]]}
    ids = lake.read("silver", "wdbc", columns=["id"]).column("id")
    assert str(ids.type) == "int64" and ids.null_count == 0
    validate("wdbc", DAYS[0])  # the declaration and the tables agree again
