"""Sharded scoring on real Dask clusters of worker processes: same answers on any number of
workers, exactly once through worker deaths and concurrent runs, on any scheduler."""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xgboost as xgb
from distributed import Client

from datasets import get_dataset
from flows.resources import lake_of, registry_of
from flows.score import score
from flows.settings import Settings, use_settings
from tasks.cluster import ClusterSpec, local_cluster
from tasks.features import feature_matrix
from tasks.ledger import read_ledger
from tasks.profiles import load_day_histograms
from tasks.scoring import ModelRef, score_rows
from tasks.training import register_model, train_classifier
from tasks.validation import silver_schema

pytestmark = pytest.mark.integration

ADULT = get_dataset("adult")
DS = "2024-02-01"


def seed_silver(settings: Settings, ds: str, rows: int, seed: int = 0) -> pd.DataFrame:
    frame = ADULT.synthesize(rows, seed=seed)
    frame["_row_id"] = [f"{ds}-{i:08d}" for i in range(rows)]
    frame["_source"] = "synthetic"
    frame["_line"] = np.arange(rows)
    frame["_ingested_at"] = pd.Timestamp("2024-01-01", tz="UTC")
    frame["ds"] = ds
    frame["_run_id"] = "seed"
    table = pa.Table.from_pandas(frame, schema=silver_schema(ADULT), preserve_index=False)
    lake_of(settings).replace_slice("silver", "adult", table, {"ds": ds}, run_id="seed")
    return frame


def train_champion(settings: Settings, frame: pd.DataFrame, rounds: int = 60):
    trained = train_classifier(frame, ADULT.roles, rounds=rounds)
    store = registry_of(settings)
    card = register_model.fn(store, "adult", ADULT.roles, trained, {"ds": [DS]}, promote=True)
    return card, trained


def predictions(settings: Settings, ds: str = DS) -> pd.DataFrame:
    table = lake_of(settings).read("predictions", "adult", where={"ds": ds})
    return table.to_pandas().sort_values("_row_id").reset_index(drop=True)


def score_entry(settings: Settings, ds: str = DS) -> pd.Series:
    ledger = read_ledger(lake_of(settings), "adult", ds)
    return ledger[ledger["stage"] == "score"].iloc[-1]


@pytest.fixture(scope="module")
def scored_day(tmp_path_factory, prefect_api):
    settings = Settings(home=tmp_path_factory.mktemp("home"), lake_row_group_rows=2048)
    frame = seed_silver(settings, DS, 20_000)
    card, trained = train_champion(settings, frame)
    return settings, frame, card, trained


@pytest.mark.parametrize("workers", [1, 2])
def test_any_number_of_workers_gives_the_single_process_and_xgboost_answer(scored_day, workers):
    settings, frame, card, trained = scored_day
    with local_cluster(ClusterSpec(workers=workers, device="cpu")) as address:
        run = settings.model_copy(update={"dask_address": address, "shard_rows": 4096})
        with use_settings(run):
            score.with_options(task_runner=_runner(address))("adult", DS)
    scored = predictions(settings)
    assert len(scored) == len(frame) and scored["_row_id"].is_unique
    assert len(score_entry(settings)["details"]["shards"]) == 5

    rows = pa.Table.from_pandas(frame, preserve_index=False)
    models = [ModelRef.resolve(registry_of(settings), "adult", card.version, "champion")]
    single, _, _ = score_rows(rows, models, DS, "single")
    single = single[card.version].to_pandas().sort_values("_row_id").reset_index(drop=True)
    np.testing.assert_array_equal(scored["score"].to_numpy(), single["score"].to_numpy())

    order = frame.sort_values("_row_id")
    X = feature_matrix(order, card.feature_spec)
    reference = trained.booster.predict(xgb.DMatrix(X, feature_names=list(card.feature_spec.names)))
    np.testing.assert_allclose(scored["score"].to_numpy(), reference, rtol=0, atol=2e-7)


def _runner(address: str):
    from tasks.cluster import dask_task_runner

    return dask_task_runner(address, ClusterSpec())


@pytest.mark.slow
def test_a_killed_worker_costs_a_retry_not_a_row(tmp_path, prefect_api):
    settings = Settings(home=tmp_path / "home", lake_row_group_rows=2048, shard_rows=20_000)
    frame = seed_silver(settings, DS, 200_000)
    train_champion(settings, frame.iloc[:20_000], rounds=1000)
    with local_cluster(ClusterSpec(workers=2, device="cpu")) as address:
        run = settings.model_copy(update={"dask_address": address})
        with Client(address) as client:
            pids = client.run(os.getpid)
        outcome: dict = {}
        worker = threading.Thread(
            target=lambda: outcome.update(result=_score_or_error(run)), daemon=True
        )
        with use_settings(run):
            worker.start()
            _kill_the_first_worker_to_start_a_shard(run, pids)
            worker.join(300)
    assert outcome["result"] == {
        "scored": 200_000,
        "model_version": "v1",
        "models": {"v1": "champion"},
    }
    scored = predictions(settings)
    assert len(scored) == 200_000 and scored["_row_id"].is_unique
    details = score_entry(settings)["details"]
    assert details["retried_shards"], "the ledger shows the shard the dead worker was running"


def _score_or_error(settings: Settings):
    try:
        return score.with_options(task_runner=_runner(settings.dask_address))("adult", DS)
    except Exception as error:  # noqa: BLE001 - reported by the assertion
        return error


def _kill_the_first_worker_to_start_a_shard(settings: Settings, pids: dict[str, int]) -> None:
    """SIGKILL the worker process that writes the first attempt marker, right away: it is
    then in the middle of scoring that shard."""
    import fsspec

    fs = fsspec.filesystem("file")
    pattern = f"{settings.lake_uri}/_staging/adult/{DS}/*/*"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for marker in fs.glob(pattern):
            os.kill(pids[fs.cat_file(marker).decode()], signal.SIGKILL)
            return
        time.sleep(0.002)
    raise AssertionError("no shard started within two minutes")


def test_the_score_step_leaves_one_histograms_slice_of_every_row(scored_day, dask_address):
    """Full-data drift from the scoring pass: the day's merged histograms count every row
    once per column, and re-running the day leaves the same slice (not double counts)."""
    settings, frame, card, trained = scored_day
    run = settings.model_copy(update={"dask_address": dask_address, "shard_rows": 4096})
    lake = lake_of(settings)
    days = []
    for _ in range(2):
        with use_settings(run):
            score.with_options(task_runner=_runner(dask_address))("adult", DS)
        days.append(load_day_histograms.fn(lake, "adult", DS, card.version))
        assert f"histograms@{card.version}" in score_entry(settings)["delta_versions"]
    first, second = days
    profile = registry_of(settings).profile("adult", card.version)
    assert profile == trained.profile and list(first) == [c.name for c in profile.columns]
    assert {name: int(counts.sum()) for name, counts in first.items()} == dict.fromkeys(
        first, len(frame)
    )
    assert all(np.array_equal(first[name], second[name]) for name in first)
    table = lake.read("histograms", "adult", where={"ds": DS}).to_pandas()
    assert len(table) == len(profile.columns) and (table["rows"] == len(frame)).all()
    # the score histogram is that of the committed predictions
    scored = predictions(settings)["score"].to_numpy(dtype=np.float32)
    edges = profile.score.edges
    bins = np.searchsorted(edges, scored, side="right")
    np.testing.assert_array_equal(first["score"][:-1], np.bincount(bins, minlength=edges.size + 1))


def test_two_runs_of_one_day_at_once_converge_to_one_slice(scored_day, dask_address):
    settings, frame, card, _ = scored_day
    run = settings.model_copy(update={"dask_address": dask_address, "shard_rows": 4096})
    results: list = []
    # each thread runs in a copy of this context: Prefect's settings (the session's API URL)
    # live in a context variable, which a new thread would not inherit
    threads = [
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(lambda: results.append(_score_or_error(run)),),
        )
        for _ in range(2)
    ]
    # the settings are the process's (one global): set once around both runs, since a
    # thread restoring them on its way out would pull them from under the other
    with use_settings(run):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    one_slice = {
        "scored": 20_000,
        "model_version": card.version,
        "models": {card.version: "champion"},
    }
    assert results == [one_slice] * 2
    scored = predictions(settings)
    assert len(scored) == 20_000 and scored["_row_id"].is_unique
    assert set(scored["_row_id"]) == set(frame["_row_id"])


def test_an_external_scheduler_is_used_when_its_address_is_set(scored_day, tmp_path, prefect_api):
    settings, frame, _, _ = scored_day
    scheduler_file = tmp_path / "scheduler.json"
    dask = str(Path(sys.executable).with_name("dask"))
    env = os.environ | {"PREFECT_API_URL": prefect_api}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        _wait_for(scheduler_file.exists, 60)
        worker = subprocess.Popen(
            [dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
             "--no-dashboard", "--host", "127.0.0.1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with Client(scheduler_file=str(scheduler_file)) as client:
            client.wait_for_workers(1, timeout=60)
            address = client.scheduler.address
        run = settings.model_copy(update={"dask_address": address})
        with use_settings(run):
            result = score.with_options(task_runner=_runner(address))("adult", "2024-02-01")
    finally:
        for process in (worker, scheduler):
            if process:
                process.terminate()
                process.wait(30)
    assert result["scored"] == len(frame)
    assert score_entry(settings)["details"]["cluster"].startswith(
        f"Dask scheduler {address}: 1 workers"
    )


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


@pytest.mark.gpu
def test_local_cuda_cluster_scores_like_the_cpu(scored_day):
    settings, _, _, _ = scored_day
    with local_cluster(ClusterSpec(workers=1, device="cpu")) as address:
        run = settings.model_copy(update={"dask_address": address})
        with use_settings(run):
            score.with_options(task_runner=_runner(address))("adult", DS)
    cpu = predictions(settings)
    spec = ClusterSpec(device="auto")
    with local_cluster(spec) as address:
        run = settings.model_copy(update={"dask_address": address, "device": "gpu"})
        with use_settings(run):
            score.with_options(task_runner=_runner(address))("adult", DS)
    gpu = predictions(settings)
    assert score_entry(settings)["details"]["devices"] == ["gpu"]
    np.testing.assert_allclose(gpu["score"], cpu["score"], atol=1e-5)


@pytest.mark.gpu
def test_gpu_out_of_memory_halves_the_batch(scored_day):
    settings, frame, card, _ = scored_day
    import cupy

    from tasks.scoring import cached_forest, predict_in_batches

    # 20 copies of the day: the first batch's feature matrix (~20 MB) cannot fit the pool.
    rows = pa.concat_tables([pa.Table.from_pandas(frame, preserve_index=False)] * 20)
    _, forest = cached_forest(
        ModelRef.resolve(registry_of(settings), "adult", card.version, "champion")
    )
    pool = cupy.cuda.MemoryPool()
    pool.set_limit(size=6 * 2**20)
    cupy.cuda.set_allocator(pool.malloc)
    try:
        scores, device, events = predict_in_batches(
            rows, card.feature_spec, forest, "gpu", batch_rows=rows.num_rows, min_batch_rows=256
        )
    finally:
        cupy.cuda.set_allocator(cupy.cuda.MemoryPool().malloc)
    assert any("batch halved" in event for event in events)
    assert len(scores) == rows.num_rows and not np.isnan(scores).any()
