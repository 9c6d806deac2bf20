"""Score: lake/silver → lake/predictions, one task per shard on a Dask cluster."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.utilities.annotations import unmapped

from flows.resources import (
    RUN_END_HOOKS,
    current_run_id,
    lake_of,
    registry_of,
    staging_uri_of,
    store_of,
)
from flows.settings import current_settings
from reports import artifact_key, publish_markdown, scoring_markdown
from tasks.cluster import inspect_cluster, publish_dashboard_link
from tasks.ledger import ledger_stage
from tasks.scoring import (
    ShardProgress,
    clear_staging,
    commit_histograms,
    commit_predictions,
    plan_shards,
    resolve_models,
    score_shard,
    shard_summary,
    worker_usage,
)


@flow(name="score", flow_run_name="score-{dataset}-{ds}", **RUN_END_HOOKS)
def score(dataset: str, ds: str) -> dict:
    """Score every silver row of the day with the champion (and any challenger) over the
    same shards, then commit each model's predictions of the day in one atomic replace, and
    the day's merged feature and score histograms of each model that has a reference
    profile (full-data drift, read by the monitor)."""
    settings = current_settings()
    lake, registry, run_id = lake_of(settings), registry_of(settings), current_run_id()
    store = store_of(settings)
    logger = get_run_logger()
    staging = staging_uri_of(settings, dataset, ds, run_id)
    with ledger_stage(lake, dataset, ds, "score", run_id) as entry:
        started = time.perf_counter()
        cluster = inspect_cluster.submit().result()
        logger.info("scoring on %s", cluster.describe())
        publish_dashboard_link(cluster, key=artifact_key(f"dask-{dataset}-{ds}"))
        models = resolve_models(registry, dataset)
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
            store=unmapped(store),
        )
        results = [progress.advance(future.result()) for future in as_completed(futures)]
        entry.delta_versions = commit_predictions(lake, dataset, ds, models, results, run_id)
        entry.delta_versions |= commit_histograms(lake, dataset, ds, models, results, run_id)
        attempts = clear_staging(staging, store)
        summary = shard_summary(results, attempts, time.perf_counter() - started)
        entry.rows_in = entry.rows_out = summary["rows"]
        entry.model_version = models[0].version
        entry.add_usage(worker_usage(results))
        entry.details = summary | {
            "models": {model.version: model.role for model in models},
            "cluster": cluster.describe(),
        }
        publish_markdown(
            scoring_markdown(dataset, ds, entry.details),
            key=artifact_key(f"scoring-{dataset}-{ds}"),
            description=f"Models that scored {dataset} ds={ds}",
        )
        logger.info(
            "scored %s rows in %d shards at %s rows/s with %s; retried shards: %s",
            summary["rows"],
            len(results),
            summary["rows_per_second"],
            ", ".join(f"{m.version} ({m.role})" for m in models),
            summary["retried_shards"] or "none",
        )
    return {
        "scored": summary["rows"],
        "model_version": models[0].version,
        "models": {model.version: model.role for model in models},
    }
