"""Shared test harness: one real Prefect server and one Dask cluster of worker processes
for the whole session, and a fresh TIDEWATER_HOME per test."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# As the CLI does: flow and task logs reach the Prefect API at INFO, the terminal warnings only.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def gpu_present() -> bool:
    from kernels import gpu_available

    return gpu_available()


def pytest_collection_modifyitems(config, items):
    if any(item.get_closest_marker("gpu") for item in items) and not gpu_present():
        skip = pytest.mark.skip(reason="needs a CUDA device (none visible)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """CI (.ci/run) gives the slow cases what is left of its time: past the epoch second in
    TIDEWATER_SLOW_CASES_UNTIL no slow case starts; each is skipped saying so."""
    until = os.environ.get("TIDEWATER_SLOW_CASES_UNTIL")
    if until and item.get_closest_marker("slow") and time.time() > float(until):
        pytest.skip("CI's time for slow cases is spent (.ci/run); `make test-slow` runs it")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    """A real `prefect server` on loopback (SQLite), shared by every process of the session."""
    from deployments.server import ensure_prefect_api, stop_server

    home = tmp_path_factory.mktemp("prefect-home")
    configured = os.environ.get("PREFECT_API_URL")
    api_url = ensure_prefect_api(home)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        yield api_url
    if not configured:
        stop_server(home)
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def dask_address(prefect_api) -> str:
    """A LocalCluster of two worker processes that know the Prefect API."""
    from tasks.cluster import ClusterSpec, local_cluster

    with local_cluster(ClusterSpec(workers=2, device="cpu")) as address:
        yield address


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "tidewater"


@pytest.fixture
def settings(home, dask_address):
    """This test's settings, installed as the process's settings for its flows."""
    from flows.settings import Settings, use_settings

    with use_settings(Settings(home=home, dask_address=dask_address)) as settings:
        yield settings


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite registry, migrated once per session (a first use takes seconds)."""
    from tasks.registry import ModelRegistry

    folder = tmp_path_factory.mktemp("mlflow-template")
    ModelRegistry(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "models")).versions("x")
    return folder / "mlflow.db"


@pytest.fixture
def registry(tmp_path, mlflow_db_template):
    """A model registry of its own: a copy of the empty database, artifacts in tmp_path."""
    import shutil

    from tasks.registry import ModelRegistry

    shutil.copyfile(mlflow_db_template, tmp_path / "mlflow.db")
    return ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "models"))


@pytest.fixture
def validated_day(home):
    """Ingests and validates landed files (name, CSV text) as one day of adult in the lake
    under `home`, as the ingest and validate flows do, without Prefect (ledger rows too);
    returns (lake, rows landed)."""
    from datasets import get_dataset
    from tasks.bronze import stage_partition, write_partition
    from tasks.lake import Lake
    from tasks.landing import FileContent, LandedFile
    from tasks.ledger import LedgerEntry, record_entry
    from tasks.validation import commit_validated, stage_validated

    spec, lake = get_dataset("adult"), Lake(str(home / "lake"))

    def land(files: list[tuple[str, str]], ds: str) -> tuple[Lake, int]:
        contents = [
            FileContent(LandedFile(f"mem://landing/{name}", name, len(text)), text.encode(), "0")
            for name, text in files
        ]
        target = (spec.roles.target,)
        staged = stage_partition.fn(lake, contents, "adult", spec.columns, ds, "i", spec.landing,
                                    target)  # fmt: skip
        write_partition.fn(lake, "adult", spec.columns, ds, staged, "i")
        split = stage_validated.fn(lake, spec, ds, "v")
        commit_validated.fn(lake, spec, ds, split, "v")
        ingested = LedgerEntry("adult", ds, "ingest", "i", rows_in=staged.landed_rows)
        ingested.rows_out, ingested.rows_diverted = staged.bronze_rows, staged.rejected_rows
        validated = LedgerEntry("adult", ds, "validate", "v", rows_in=ingested.rows_out)
        validated.rows_out, validated.rows_diverted = split.silver_count, split.quarantined_count
        for entry in (ingested, validated):
            record_entry(lake, entry)
        return lake, staged.landed_rows

    return land
