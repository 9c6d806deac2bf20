"""Score: lake/silver → lake/predictions, one task per shard on a Dask cluster."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.utilities.annotations import unmapped

from flows.resources import current_run_id, lake_of, model_store_of
from flows.settings import Settings
from tasks.ledger import ledger_stage
from tasks.scoring import (
    commit_predictions,
    plan_shards,
    resolve_models,
    score_shard,
    shard_summary,
)


@flow(name="score", flow_run_name="score-{dataset}-{ds}")
def score(dataset: str, ds: str, settings: Settings | None = None) -> dict:
    """Score every silver row of the day with the champion (and any challenger), then
    commit each model's predictions of the day in one atomic replace."""
    settings = settings or Settings()
    lake, store, run_id = lake_of(settings), model_store_of(settings), current_run_id()
    with ledger_stage(lake, dataset, ds, "score", run_id) as entry:
        started = time.perf_counter()
        models = resolve_models(store, dataset)
        shards = plan_shards(lake, dataset, ds, settings.shard_rows)
        futures = score_shard.map(
            shards,
            models=unmapped(models),
            ds=unmapped(ds),
            run_id=unmapped(run_id),
            storage_options=unmapped(settings.storage_options),
        )
        results = [future.result() for future in futures]
        entry.delta_versions = commit_predictions(lake, dataset, ds, models, results, run_id)
        summary = shard_summary(results, time.perf_counter() - started)
        entry.rows_in = entry.rows_out = summary["rows"]
        entry.model_version = models[0].version
        entry.details = summary | {"models": {model.version: model.role for model in models}}
        get_run_logger().info(
            "scored %s rows in %d shards (%s rows/s) with %s",
            summary["rows"],
            len(results),
            summary["rows_per_second"],
            ", ".join(f"{m.version} ({m.role})" for m in models),
        )
    return {"scored": summary["rows"], "model_version": models[0].version}
