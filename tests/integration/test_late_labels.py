"""Labels that land days after their features: monitoring works without them, and when
they land, the earlier day's quality metrics are recomputed and the ledger says so, while
the verdict that day's run decided stands; the policy replay agrees with the live runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from datasets import get_dataset
from flows.ingest import ingest
from flows.labels import ingest_labels
from flows.pipeline import pipeline
from flows.resources import lake_of
from flows.settings import Settings, use_settings
from flows.train import train
from flows.validate import validate
from reports.policy import replay
from tasks.ledger import read_ledger
from tasks.monitoring import recorded_assessments

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # three days of the pipeline

DATASET = "adult"
DAY1, DAY2, DAY3 = "2024-02-01", "2024-02-02", "2024-02-03"


@pytest.fixture(scope="module")
def settings(tmp_path_factory, dask_address) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("home"), dask_address=dask_address)
    get_dataset(DATASET).land(
        settings.landing_uri, date(2024, 2, 1), 3, bad_files=False, labels_delay_days=1
    )
    with use_settings(settings):
        ingest(DATASET, DAY1)
        validate(DATASET, DAY1)
        ingest_labels(DATASET, DAY2)  # the labels of DAY1
        train(DATASET, [DAY1])
        pipeline(DATASET, DAY2)
        yield settings


def quality(settings, ds: str) -> dict[str, float]:
    metrics = lake_of(settings).read("metrics", where={"dataset": DATASET, "ds": ds}).to_pandas()
    rows = metrics[metrics["metric"].str.startswith("quality:")]
    return dict(zip(rows["metric"].str.removeprefix("quality:"), rows["value"], strict=True))


def verdict_of(settings, ds: str) -> float:
    metrics = lake_of(settings).read("metrics", where={"dataset": DATASET, "ds": ds}).to_pandas()
    return metrics.loc[metrics["metric"] == "decision:verdict", "value"].item()


def test_a_day_without_labels_is_monitored_and_its_quality_recomputed_when_they_land(settings):
    assert quality(settings, DAY2) == {"labelled_rows": 0.0}
    decided = verdict_of(settings, DAY2)

    run = pipeline(DATASET, DAY3)  # DAY3's labels feed holds DAY2's labels

    assert run["verdict"] in ("ok", "warn", "retrain")
    recomputed = quality(settings, DAY2)
    silver_rows = lake_of(settings).read("silver", DATASET, where={"ds": DAY2}).num_rows
    assert 0.99 * silver_rows <= recomputed["labelled_rows"] <= silver_rows
    assert recomputed["auc"] > 0.8
    assert verdict_of(settings, DAY2) == decided  # the verdict that day's run decided stands
    ledger = read_ledger(lake_of(settings), DATASET)
    labels = ledger[(ledger["stage"] == "labels") & (ledger["ds"] == DAY3)].iloc[-1]
    assert labels["details"]["recomputed_days"] == [DAY2]
    monitor = ledger[(ledger["stage"] == "monitor") & (ledger["ds"] == DAY2)].iloc[-1]
    assert monitor["details"]["recomputed"] == f"labels landed on {DAY3}"


def test_the_policy_replay_decides_what_the_live_runs_decided(settings):
    pipeline(DATASET, DAY3)
    recorded = recorded_assessments(lake_of(settings), DATASET)
    assert [day.ds for day in recorded] == [DAY2, DAY3]
    replayed = replay(recorded, settings.retrain_policy_for(DATASET))
    assert [day.verdict for day in replayed] == [day.verdict for day in recorded]

    tidewater = Path(sys.executable).with_name("tidewater")
    shown = subprocess.run(
        [tidewater, "policy", "replay", DATASET, "--start", DAY1, "--end", DAY3],
        env={"TIDEWATER_HOME": str(settings.home), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "matches the live decisions on 2 of 2 day(s)" in shown.stdout
    what_if = subprocess.run(
        [tidewater, "policy", "replay", DATASET, "--start", DAY1, "--end", DAY3, "--set", "x=1"],
        env={"TIDEWATER_HOME": str(settings.home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert what_if.returncode == 2 and "invalid policy" in what_if.stderr
    assert pd.notna(verdict_of(settings, DAY3))
