"""Train: fit a model on a pinned version of silver days, register it, optionally promote."""

from __future__ import annotations

from prefect import flow

from datasets import get_dataset
from flows.resources import current_run_id, lake_of, model_store_of
from flows.settings import Settings
from tasks.ledger import ledger_stage
from tasks.training import fit_model, read_training_window, register_model


@flow(name="train", flow_run_name="train-{dataset}-{days[0]}")
def train(
    dataset: str, days: list[str], promote: bool = True, settings: Settings | None = None
) -> str:
    """Train on the silver rows of `days`; the card records the silver version read."""
    settings = settings or Settings()
    spec, lake, run_id = get_dataset(dataset), lake_of(settings), current_run_id()
    with ledger_stage(lake, dataset, days[-1], "train", run_id) as entry:
        frame, silver_version = read_training_window(lake, dataset, days)
        if len(frame) < settings.bootstrap_min_rows:
            raise ValueError(
                f"{len(frame)} silver rows of {dataset} in {days[0]}..{days[-1]}: "
                f"need at least {settings.bootstrap_min_rows} to train"
            )
        trained = fit_model(frame, spec.roles)
        trained_on = {"table": lake.uri("silver", dataset), "version": silver_version, "ds": days}
        card = register_model(
            model_store_of(settings), dataset, spec.roles, trained, trained_on, promote
        )
        entry.rows_in = len(frame)
        entry.model_version = card.version
        entry.details = {"metrics": card.metrics, "trained_on": trained_on, "promoted": promote}
    return card.version
