"""The resources a flow works with, built from the settings."""

from __future__ import annotations

import uuid

from prefect.runtime import flow_run

from flows.settings import Settings
from tasks.lake import Lake
from tasks.model_store import ModelStore


def lake_of(settings: Settings) -> Lake:
    return Lake(settings.lake_uri, settings.storage_options)


def model_store_of(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_uri, settings.storage_options)


def current_run_id() -> str:
    """The Prefect flow run id, stamped on every row and commit this run writes."""
    return str(flow_run.id or f"local-{uuid.uuid4()}")
