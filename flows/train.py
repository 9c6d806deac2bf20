"""Train: fit a model on a pinned version of silver days, register it, optionally promote."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from datasets import get_dataset
from flows.resources import RUN_END_HOOKS, current_run_id, lake_of, registry_of
from flows.settings import current_settings
from tasks.labels import attach_labels, known_labels
from tasks.ledger import ledger_stage, succeeded_days
from tasks.training import (
    fit_model,
    read_training_window,
    register_model,
    text_like_columns,
)


def train_run_name() -> str:
    parameters = flow_run.parameters
    days = parameters.get("days")
    return f"train-{parameters['dataset']}-" + (f"{days[0]}..{days[-1]}" if days else "latest")


@flow(name="train", flow_run_name=train_run_name, **RUN_END_HOOKS)
def train(dataset: str, days: list[str] | None = None, promote: bool = True) -> str:
    """Train on the silver rows of `days` (default: the latest `train_window_days` days
    validated), each labelled by the labels feed where it has a label, else by its landed
    target; the card records the silver and labels versions read."""
    settings = current_settings()
    lake, run_id = lake_of(settings), current_run_id()
    days = days or succeeded_days(lake, dataset, "validate")[-settings.train_window_days :]
    if not days:
        raise LookupError(f"no validated day of {dataset} to train on: run a day first")
    with ledger_stage(lake, dataset, days[-1], "train", run_id) as entry:
        spec = get_dataset(dataset)
        frame, silver_version = read_training_window(lake, dataset, days)
        labels, labels_version = known_labels(lake, spec)
        frame, from_feed = attach_labels(frame, labels, spec)
        if len(frame) < settings.bootstrap_min_rows:
            raise ValueError(
                f"{len(frame)} silver rows of {dataset} in {days[0]}..{days[-1]}: "
                f"need at least {settings.bootstrap_min_rows} to train"
            )
        for name in text_like_columns(frame, spec.roles):
            get_run_logger().warning(
                "%s: categorical feature %r is nearly all distinct values; if it is free "
                "text or an id, declare it in FeatureRoles.text or .identifiers",
                dataset,
                name,
            )
        trained = fit_model(frame, spec.roles, settings.min_holdout_auc)
        trained_on = {
            "table": lake.uri("silver", dataset),
            "version": silver_version,
            "ds": days,
            "labels": {"version": labels_version, "rows_labelled_by_feed": from_feed},
        }
        card = register_model(
            registry_of(settings), dataset, spec.roles, trained, trained_on, promote
        )
        entry.rows_in = len(frame)
        entry.model_version = card.version
        entry.details = {"metrics": card.metrics, "trained_on": trained_on, "promoted": promote}
    get_run_logger().info(
        "%s model %s trained on %d rows of %s..%s%s",
        dataset,
        card.version,
        len(frame),
        days[0],
        days[-1],
        " (champion)" if promote else "",
    )
    return card.version
