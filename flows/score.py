"""Score: lake/silver → lake/predictions, one task per shard on a Dask cluster."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.utilities.annotations import unmapped

from flows.resources import current_run_id, lake_of, model_store_of, staging_uri_of
from flows.settings import Settings
from tasks.cluster import inspect_cluster, publish_dashboard_link
from tasks.ledger import ledger_stage
from tasks.scoring import (
    ShardProgress,
    clear_staging,
    commit_predictions,
    plan_shards,
    resolve_models,
    score_shard,
    shard_summary,
)


@flow(name="score", flow_run_name="score-{dataset}-{ds}")
def score(dataset: str, ds: str, settings: Settings | None = None) -> dict:
    """Score every silver row of the day with the champion (and any challenger) over the
    same shards, then commit each model's predictions of the day in one atomic replace."""
    settings = settings or Settings()
    lake, store, run_id = lake_of(settings), model_store_of(settings), current_run_id()
    logger = get_run_logger()
    staging = staging_uri_of(settings, dataset, ds, run_id)
    with ledger_stage(lake, dataset, ds, "score", run_id) as entry:
        started = time.perf_counter()
        cluster = inspect_cluster.submit().result()
        logger.info("scoring on %s", cluster.describe())
        publish_dashboard_link(cluster, key=f"dask-{dataset}-{ds}".lower().replace("_", "-"))
        models = resolve_models(store, dataset)
        shards = plan_shards(
            lake, dataset, ds, settings.shard_rows, settings.shard_bytes, cluster.threads
        )
        progress = ShardProgress.start(dataset, ds, total=len(shards))
        futures = score_shard.with_options(retries=settings.shard_retries).map(
            shards,
            models=unmapped(models),
            ds=unmapped(ds),
            run_id=unmapped(run_id),
            lake_root=unmapped(settings.lake_uri),
            staging_uri=unmapped(staging),
            device=unmapped(settings.device),
            batch_rows=unmapped(settings.score_batch_rows),
            storage_options=unmapped(settings.storage_options),
        )
        results = [progress.advance(future.result()) for future in as_completed(futures)]
        entry.delta_versions = commit_predictions(lake, dataset, ds, models, results, run_id)
        attempts = clear_staging(staging, settings.storage_options)
        summary = shard_summary(results, attempts, time.perf_counter() - started)
        entry.rows_in = entry.rows_out = summary["rows"]
        entry.model_version = models[0].version
        entry.details = summary | {
            "models": {model.version: model.role for model in models},
            "cluster": cluster.describe(),
        }
        logger.info(
            "scored %s rows in %d shards at %s rows/s with %s; retried shards: %s",
            summary["rows"],
            len(results),
            summary["rows_per_second"],
            ", ".join(f"{m.version} ({m.role})" for m in models),
            summary["retried_shards"] or "none",
        )
    return {"scored": summary["rows"], "model_version": models[0].version}
