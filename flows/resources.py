"""The resources a flow works with, built from this process's settings, and the Prefect
state hooks that record runs which ended without their stage recording itself."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from functools import cache

from prefect import runtime
from prefect.settings import temporary_settings

from flows.settings import Settings, current_settings
from tasks.cluster import ClusterSpec, served_scheduler_address
from tasks.lake import Lake
from tasks.ledger import record_ended_run
from tasks.registry import ModelRegistry
from tasks.storage import StorageAccessDenied, StorageConfigError, Store


def store_of(settings: Settings) -> Store:
    """The store of the settings' storage options (either library's spelling), completed by
    the Prefect block they name and the standard AWS environment; the options are unwrapped
    only here."""
    options = dict(settings.storage_options.get_secret_value())
    if settings.storage_block:
        options |= _block_options(settings.storage_block)
    return Store.from_options(options)


@cache
def _block_options(slug_and_name: str) -> dict[str, str]:
    """The storage options a Prefect block holds: a Secret block's JSON options, or an AWS
    Credentials block's keys, region and endpoint. Read as the block document's data, so
    prefect-aws need not be installed where it is read (Prefect's server knows the block
    type: it can be made in the UI)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    slug, name = slug_and_name.split("/", 1)
    try:
        with get_client(sync_client=True) as client:
            data = client.read_block_document_by_name(name, slug, include_secrets=True).data
    except ObjectNotFound:
        raise StorageConfigError(
            f"no Prefect block {slug_and_name} (TIDEWATER_STORAGE_BLOCK)"
        ) from None
    if slug == "secret":
        value = data["value"]
        return dict(json.loads(value) if isinstance(value, str) else value)
    return _aws_credentials_options(slug_and_name, data)


def _aws_credentials_options(block: str, data: dict) -> dict[str, str]:
    if data.get("profile_name"):
        raise StorageConfigError(
            f"the block {block} names a profile: give its access key and secret instead "
            "(a profile lives in one machine's ~/.aws, not where the flows run)"
        )
    endpoint = (data.get("aws_client_parameters") or {}).get("endpoint_url")
    fields = {
        "AWS_ACCESS_KEY_ID": data.get("aws_access_key_id"),
        "AWS_SECRET_ACCESS_KEY": data.get("aws_secret_access_key"),
        "AWS_SESSION_TOKEN": data.get("aws_session_token"),
        "AWS_REGION": data.get("region_name"),
        "AWS_ENDPOINT_URL": endpoint,
    }
    return {name: str(value) for name, value in fields.items() if value}


_ACCESS_CHECKED: set[tuple[Store, str]] = set()


def check_storage(settings: Settings) -> None:
    """Fail at once, naming the store, when an S3 location refuses the credentials: one
    listing per location and process, before a run writes anything or retries."""
    store = store_of(settings)
    for uri in (settings.landing_uri, settings.lake_uri, settings.reports_uri,
                settings.models_uri):  # fmt: skip
        if (store, uri) not in _ACCESS_CHECKED:
            store.check_access(uri)
            _ACCESS_CHECKED.add((store, uri))


def lake_of(settings: Settings) -> Lake:
    return Lake(settings.lake_uri, store_of(settings), settings.lake_row_group_rows)


def registry_of(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.tracking_uri, settings.models_uri, store_of(settings))


def cluster_spec_of(settings: Settings) -> ClusterSpec:
    return ClusterSpec(
        workers=settings.dask_workers,
        threads_per_worker=settings.dask_threads_per_worker,
        device=settings.device,
        rmm_pool_size=settings.dask_rmm_pool_size,
        device_memory_limit=settings.dask_device_memory_limit,
    )


def dask_address_of(settings: Settings) -> str | None:
    """The configured scheduler, else the long-lived one `tidewater serve` started, else
    None (a cluster is started for the run)."""
    return settings.dask_address or served_scheduler_address(settings.home)


def staging_uri_of(settings: Settings, dataset: str, ds: str, run_id: str) -> str:
    return f"{settings.lake_uri.rstrip('/')}/_staging/{dataset}/{ds}/{run_id}"


def current_run_id() -> str:
    """The Prefect flow run id, stamped on every row and commit this run writes."""
    return str(runtime.flow_run.id or f"local-{uuid.uuid4()}")


def scheduled_day(ds: str | None, scheduled_start: datetime | None = None) -> str:
    """`ds` itself, or for a scheduled run the day before its scheduled start (a daily
    schedule processes yesterday's partition; a backfill scheduled in the past its own day)."""
    if ds:
        return ds
    start = scheduled_start or runtime.flow_run.scheduled_start_time or datetime.now(UTC)
    return (start - timedelta(days=1)).strftime("%Y-%m-%d")


BACKFILL_TAG = "backfill:"


def backfill_of_run() -> str | None:
    """The id of the backfill this flow run belongs to (its `backfill:{id}` tag), or None."""
    tags = runtime.flow_run.tags or []
    return next(
        (tag.removeprefix(BACKFILL_TAG) for tag in tags if tag.startswith(BACKFILL_TAG)), None
    )


@contextmanager
def subflows_on_this_heartbeat() -> Iterator[None]:
    """Subflows called inside it send no heartbeat of their own: they run in this flow's
    process, and this flow run's heartbeat already says whether that is alive. (Prefect 3
    joins a flow run's heartbeat thread at its end, which sleeps in steps of 1 s: the
    pipeline's four subflows waited about 2 s for theirs.)"""
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def pipeline_run_name() -> str:
    parameters = runtime.flow_run.parameters
    return f"pipeline-{parameters['dataset']}-{scheduled_day(parameters.get('ds'))}"


def record_run_end(flow, flow_run, state) -> None:
    """Prefect state hook (crashed, cancelled, failed; Prefect passes these by name): puts
    a run that ended without its stage recording itself in the ledger, so `tidewater
    status` shows it."""
    parameters = flow_run.parameters or {}
    if "dataset" not in parameters:
        return
    days = parameters.get("days")
    ds = days[-1] if days else scheduled_day(parameters.get("ds"), flow_run.expected_start_time)
    ended = {"CRASHED": "crashed", "CANCELLING": "cancelled", "CANCELLED": "cancelled"}
    status = ended.get(state.type.value, "failed")
    # When the store refuses the credentials, the run's own error says so, once.
    with suppress(StorageAccessDenied):
        record_ended_run(
            lake_of(current_settings()),
            parameters["dataset"],
            ds,
            flow.name,
            str(flow_run.id),
            status,
            f"{state.name}: {state.message or 'no message'}",
        )


RUN_END_HOOKS = {
    "on_crashed": [record_run_end],
    "on_cancellation": [record_run_end],
    "on_failure": [record_run_end],
}
