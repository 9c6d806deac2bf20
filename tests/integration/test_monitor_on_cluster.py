"""The monitor's Evidently report is built on the Dask cluster, so that the run's process
never imports Evidently: the workers of a local cluster import it as they start, and the
report task runs there and comes back rendered, equal to the one built in this process."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from datasets import FeatureRoles
from reports import DriftPolicy
from tasks.cluster import report_task_runner
from tasks.monitoring import drift_inputs, report_sample_drift

pytestmark = pytest.mark.integration

ROLES = FeatureRoles(
    numeric=("age",), categorical=("education",), target="label", positive_label=">50K"
)


def scored_frame(rows: int, seed: int, age_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40 + age_shift, 12, rows).round(),
            "education": rng.choice(["HS-grad", "Bachelors", "Masters"], rows),
            "score": rng.beta(2, 5, rows),
            "sex": rng.choice(["Male", "Female"], rows),  # not a drift input
        }
    )


def test_the_workers_of_a_local_cluster_import_evidently_as_they_start(dask_address):
    with Client(dask_address) as client:
        deadline = time.monotonic() + 120
        while not all(client.run(lambda: "evidently.metrics" in sys.modules).values()):
            assert time.monotonic() < deadline, "a worker had not imported Evidently in 2 min"
            time.sleep(1)


def test_the_drift_report_built_on_a_worker_equals_the_one_built_here(dask_address):
    reference, current = scored_frame(5_000, seed=1), scored_frame(8_000, seed=2, age_shift=5)
    sent = drift_inputs(current, ROLES, max_rows=4_000)
    assert list(sent.columns) == ["age", "education", "score"] and len(sent) == 4_000

    runner = report_task_runner(dask_address)
    assert isinstance(runner, DaskTaskRunner)
    assert isinstance(report_task_runner(None), ThreadPoolTaskRunner)  # no cluster: here

    @flow(task_runner=runner)
    def report_on_the_cluster():
        return report_sample_drift.submit(
            drift_inputs(reference, ROLES, 4_000), sent, ROLES, DriftPolicy(), 4_000
        ).result()

    there = report_on_the_cluster()
    here = report_sample_drift.fn(reference, current, ROLES, DriftPolicy(), 4_000)
    for worker, local in zip(there.result.columns, here.result.columns, strict=True):
        assert (worker.column, worker.method, worker.drifted) == (
            local.column, local.method, local.drifted
        )  # fmt: skip
        # Evidently sums a categorical column's bins in set order: the last bit follows
        # each process's hash seed
        assert worker.value == pytest.approx(local.value, rel=1e-12)
    assert there.decision == here.decision
    assert there.result.column("age").drifted and there.result.current_rows == 4_000
    assert there.result.snapshot is None  # what comes back is plain data and text
    assert json.loads(there.json)["summary"]["current_rows"] == 4_000
    assert there.html.lstrip().startswith("<!DOCTYPE html>")
    assert "Value Drift for column age" in there.html
