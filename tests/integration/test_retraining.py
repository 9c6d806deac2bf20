"""The retrain flow against the real components (the session's Prefect server, Delta tables,
MLflow's SQLite registry): the gate registers a good candidate as the challenger, rejects a
biased one on fairness and a worse one on quality, a window is retrained once however many
requests arrive at once, and a retrain that fails leaves the champion as it was."""

from __future__ import annotations

import contextvars
import shutil
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from datasets import get_dataset
from flows.resources import lake_of, registry_of
from flows.retrain import retrain
from flows.settings import Settings, use_settings
from tasks.ledger import read_ledger
from tasks.training import register_model, train_classifier
from tasks.validation import silver_schema

pytestmark = pytest.mark.integration

ADULT = get_dataset("adult")

CHAMPION_DAY = "2024-03-01"
WINDOW = ["2024-03-02", "2024-03-03"]
ROWS = 3000


def seed_day(settings: Settings, ds: str, frame: pd.DataFrame) -> None:
    frame = frame.copy()
    frame["_row_id"] = [f"{ds}-{i:08d}" for i in range(len(frame))]
    frame["_source"] = "synthetic"
    frame["_line"] = np.arange(len(frame))
    frame["_ingested_at"] = pd.Timestamp(ds, tz="UTC")
    frame["ds"] = ds
    frame["_run_id"] = "seed"
    table = pa.Table.from_pandas(frame, schema=silver_schema(ADULT), preserve_index=False)
    lake_of(settings).replace_slice("silver", "adult", table, {"ds": ds}, run_id="seed")


@pytest.fixture
def with_champion(tmp_path, mlflow_db_template, prefect_api):
    """A home whose champion v1 was trained on one clean day of synthetic Adult rows."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mlflow_db_template, home / "mlflow.db")
    settings = Settings(home=home)
    frame = ADULT.synthesize(6000, seed=1)
    seed_day(settings, CHAMPION_DAY, frame)
    trained = train_classifier(frame, ADULT.roles, rounds=60)
    register_model.fn(
        registry_of(settings), "adult", ADULT.roles, trained, {"ds": [CHAMPION_DAY]}, True
    )
    with use_settings(settings):
        yield settings


def _retrain_row(settings: Settings) -> pd.Series:
    ledger = read_ledger(lake_of(settings), "adult")
    return ledger[ledger["stage"] == "retrain"].iloc[-1]


def test_a_good_candidate_becomes_the_challenger_once_per_window(with_champion):
    settings = with_champion
    for i, ds in enumerate(WINDOW):
        seed_day(settings, ds, ADULT.synthesize(ROWS, drift=1.0, seed=10 + i))
    outcome = retrain("adult", days=WINDOW, reasons=["drift"], requested_on=WINDOW[-1])
    assert outcome == {"window": "2024-03-02..2024-03-03", "gate": "passed", "challenger": "v2"}
    registry = registry_of(settings)
    assert registry.aliases("adult") == {"champion": "v1", "challenger": "v2"}
    tags = registry.version_tags("adult", "v2")
    assert tags["tidewater.window"] == "2024-03-02..2024-03-03"
    assert tags["tidewater.gate"] == "passed"
    row = _retrain_row(settings)
    assert row["status"] == "succeeded" and row["model_version"] == "v2"
    checks = {check["name"] for check in row["details"]["gate"]["checks"]}
    assert {"AUC", "log-loss", "calibration error"} <= checks, checks

    # Two more requests for the same window at once: both answer with the first decision.
    results: list = []
    threads = [
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(lambda: results.append(retrain("adult", days=WINDOW)),),
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert [r["challenger"] for r in results] == ["v2", "v2"]
    assert all("duplicate_of" in r for r in results)
    assert registry.versions("adult") == ["v1", "v2"]


def test_a_biased_candidate_is_rejected_with_a_fairness_reason(with_champion):
    settings = with_champion
    for i, ds in enumerate(WINDOW):
        frame = ADULT.synthesize(ROWS, seed=20 + i)
        # the protected attribute leaks into the label: men earn more, by construction
        frame["income"] = np.where(frame["sex"] == "Male", ">50K", "<=50K")
        seed_day(settings, ds, frame)
    outcome = retrain("adult", days=WINDOW)
    assert outcome["gate"] == "rejected"
    assert outcome["reasons"] and all(r.startswith("fairness:") for r in outcome["reasons"])
    assert any(" of sex" in r for r in outcome["reasons"])
    registry = registry_of(settings)
    assert registry.aliases("adult") == {"champion": "v1"}
    assert registry.versions("adult") == ["v1"]
    row = _retrain_row(settings)
    assert row["verdict"] == "rejected" and row["details"]["mlflow_run"]


def test_a_worse_candidate_is_rejected_on_quality(with_champion):
    settings = with_champion
    rng = np.random.default_rng(3)
    for i, ds in enumerate(WINDOW):
        frame = ADULT.synthesize(ROWS, seed=30 + i)
        # labels of the rows it trains on are noise; the held-out newest rows keep theirs
        trains_on = np.arange(ROWS) < (ROWS if i == 0 else ROWS - int(0.4 * ROWS))
        flip = trains_on & (rng.random(ROWS) < 0.45)
        frame.loc[flip, "income"] = rng.choice([">50K", "<=50K"], flip.sum())
        seed_day(settings, ds, frame)
    outcome = retrain("adult", days=WINDOW)
    assert outcome["gate"] == "rejected"
    assert any(r.startswith("quality:") for r in outcome["reasons"]), outcome["reasons"]
    assert registry_of(settings).aliases("adult") == {"champion": "v1"}


def test_a_failed_retrain_leaves_the_champion_untouched(with_champion):
    settings = with_champion
    for i, ds in enumerate(WINDOW):
        frame = ADULT.synthesize(ROWS, seed=40 + i)
        frame["income"] = "<=50K"  # one class: the candidate is refused mid-flow
        seed_day(settings, ds, frame)
    with pytest.raises(Exception, match="both classes"):
        retrain("adult", days=WINDOW)
    registry = registry_of(settings)
    assert registry.aliases("adult") == {"champion": "v1"}
    assert registry.versions("adult") == ["v1"]
    row = _retrain_row(settings)
    assert row["status"] == "failed" and "both classes" in row["error"]


@pytest.mark.slow
def test_a_window_of_dask_train_min_rows_or_more_trains_on_the_dask_cluster(with_champion):
    from distributed import Client, get_task_stream

    from tasks.cluster import ClusterSpec, local_cluster

    for i, ds in enumerate(WINDOW):
        seed_day(with_champion, ds, ADULT.synthesize(ROWS, drift=1.0, seed=10 + i))
    with local_cluster(ClusterSpec(workers=2, device="cpu")) as address, Client(address) as client:
        settings = with_champion.model_copy(
            update={"dask_address": address, "dask_train_min_rows": 2 * ROWS}
        )
        with use_settings(settings), get_task_stream(client) as stream:
            outcome = retrain("adult", days=WINDOW)
    assert outcome["gate"] == "passed", outcome
    # xgboost.dask runs one training task ("fn", reduced by "first_valid") on each worker
    from dask.utils import key_split

    trainers = {task["worker"] for task in stream.data if key_split(task["key"]) == "fn"}
    assert len(trainers) == 2, stream.data
