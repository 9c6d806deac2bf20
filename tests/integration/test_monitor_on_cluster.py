"""The monitor's Evidently report is built on the Dask cluster, so that the run's process
never imports Evidently: the workers of a local cluster import it as they start, and the
report task reads the day's sample there and comes back rendered, equal to the one built in
this process."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pyarrow as pa
import pytest
from distributed import Client
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from datasets import adult, get_dataset
from datasets.landing_writer import encode_landing_file
from reports import DriftPolicy, FairnessPolicy
from reports.drift import REPORT_LIBRARIES
from tasks.cluster import report_task_runner
from tasks.monitoring import (
    drift_inputs,
    measure_day,
    report_day_drift,
    sample_drift,
    scored_sample,
)

pytestmark = pytest.mark.integration

DS = "2024-01-01"


def scored_day(validated_day):
    """A validated day of adult with a score per silver row, and the model's reference."""
    frame = adult.synthesize(6_000, seed=2, drift=0.6)
    frame = frame[[column for column in frame.columns if not column.startswith("_")]]
    lake, _ = validated_day([("a.csv", encode_landing_file(frame, "csv").decode())], DS)
    ids = lake.read("silver", "adult", {"ds": DS}, columns=["_row_id"]).column("_row_id")
    scores = np.random.default_rng(0).beta(2, 5, len(ids))
    predictions = pa.table({"_row_id": ids, "score": scores, "ds": [DS] * len(ids),
                            "model_version": ["v1"] * len(ids)})  # fmt: skip
    lake.replace_slice("predictions", "adult", predictions, {"ds": DS, "model_version": "v1"},
                       run_id="s")  # fmt: skip
    reference = adult.synthesize(5_000, seed=1)
    return lake, reference.assign(score=np.random.default_rng(1).beta(2, 5, len(reference)))


def test_the_workers_of_a_local_cluster_import_the_report_libraries_as_they_start(dask_address):
    def imported() -> bool:
        return all(name in sys.modules for name in REPORT_LIBRARIES)

    with Client(dask_address) as client:
        deadline = time.monotonic() + 120
        while not all(client.run(imported).values()):
            assert time.monotonic() < deadline, "a worker had not imported them in 2 min"
            time.sleep(1)


def test_the_drift_report_read_and_built_on_a_worker_equals_the_one_built_here(
    dask_address, validated_day
):
    lake, reference = scored_day(validated_day)
    spec = get_dataset("adult")
    sent = drift_inputs(reference, spec.roles, max_rows=4_000)
    assert list(sent.columns) == [*spec.roles.features, "score"] and len(sent) == 4_000

    runner = report_task_runner(dask_address)
    assert isinstance(runner, DaskTaskRunner)
    assert isinstance(report_task_runner(None), ThreadPoolTaskRunner)  # no cluster: here

    @flow(task_runner=runner)
    def report_on_the_cluster():
        future = report_day_drift.submit(lake, spec, DS, "v1", sent, DriftPolicy(), 4_000)
        return future.result()

    there = report_on_the_cluster()
    current = scored_sample(lake, spec, DS, "v1", 4_000)
    here = sample_drift(sent, current, spec.roles, DriftPolicy(), 4_000)
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


def test_the_day_measured_on_a_worker_equals_the_day_measured_here(dask_address, validated_day):
    lake, reference = scored_day(validated_day)
    spec, policy = get_dataset("adult"), FairnessPolicy(n_boot=50)

    @flow(task_runner=report_task_runner(dask_address))
    def measure_on_the_cluster():
        return measure_day.submit(lake, spec, DS, "v1", reference, policy).result()

    there, here = measure_on_the_cluster(), measure_day.fn(lake, spec, DS, "v1", reference, policy)
    assert there.rows == here.rows == 6_000
    assert there.quality == here.quality and there.quality[0]["metric"] == "quality:labelled_rows"
    assert there.bias.day.to_json() == here.bias.day.to_json()
    assert there.bias.breach_lines() == here.bias.breach_lines()
