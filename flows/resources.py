"""The resources a flow works with, built from the settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from prefect.runtime import flow_run

from flows.settings import Settings
from tasks.cluster import ClusterSpec
from tasks.lake import Lake
from tasks.model_store import ModelStore


def lake_of(settings: Settings) -> Lake:
    return Lake(settings.lake_uri, settings.storage_options, settings.lake_row_group_rows)


def model_store_of(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_uri, settings.storage_options)


def cluster_spec_of(settings: Settings) -> ClusterSpec:
    return ClusterSpec(
        workers=settings.dask_workers,
        threads_per_worker=settings.dask_threads_per_worker,
        device=settings.device,
        rmm_pool_size=settings.dask_rmm_pool_size,
        device_memory_limit=settings.dask_device_memory_limit,
    )


def staging_uri_of(settings: Settings, dataset: str, ds: str, run_id: str) -> str:
    return f"{settings.lake_uri.rstrip('/')}/_staging/{dataset}/{ds}/{run_id}"


def current_run_id() -> str:
    """The Prefect flow run id, stamped on every row and commit this run writes."""
    return str(flow_run.id or f"local-{uuid.uuid4()}")


def scheduled_day(ds: str | None) -> str:
    """`ds` itself, or for a scheduled run the day before its scheduled start (a daily
    schedule processes yesterday's partition; a backfill scheduled in the past its own day)."""
    if ds:
        return ds
    start = flow_run.scheduled_start_time or datetime.now(UTC)
    return (start - timedelta(days=1)).strftime("%Y-%m-%d")


def pipeline_run_name() -> str:
    parameters = flow_run.parameters
    return f"pipeline-{parameters['dataset']}-{scheduled_day(parameters.get('ds'))}"
