"""Retrain: the loop's answer to a retrain request. Train a candidate on the requested window,
judge it against the champion on the same newest held-out rows (quality AND fairness), and
register it as the challenger only if it passes the gate; the shadow days decide the rest."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from datasets import get_dataset
from flows.resources import (
    RUN_END_HOOKS,
    check_storage,
    cluster_spec_of,
    current_run_id,
    dask_address_of,
    lake_of,
    registry_of,
)
from flows.settings import current_settings
from reports import artifact_key, publish_markdown
from reports.gate import evaluate, gate_markdown, judge_candidate
from tasks.cluster import scheduler_at
from tasks.concurrency import one_at_a_time
from tasks.labels import attach_labels, known_labels
from tasks.ledger import ledger_stage
from tasks.retraining import (
    decided_retrain,
    evaluation_metrics,
    newest_holdout,
    score_holdout,
    training_window,
    window_key,
)
from tasks.training import fit_model, model_card_fields, read_training_window

LATEST = "9999-12-31"


def retrain_run_name() -> str:
    parameters = flow_run.parameters
    days = parameters.get("days")
    return f"retrain-{parameters['dataset']}-" + (window_key(days) if days else "latest")


@flow(name="retrain", flow_run_name=retrain_run_name, **RUN_END_HOOKS)
def retrain(
    dataset: str,
    days: list[str] | None = None,
    reasons: list[str] | None = None,
    requested_on: str | None = None,
    event_id: str | None = None,
) -> dict:
    """Train a candidate on `days` (default: the retrain policy's last `train_days` validated
    days), evaluate it and the champion on the newest held-out rows of the window, and make
    it the challenger if the gate passes it; a rejected candidate stays an MLflow run with
    its reasons. One retrain per (dataset, window): a request for a window already decided
    returns that decision. Nothing here moves the champion, so a failed retrain leaves it
    as it was."""
    settings = current_settings()
    check_storage(settings)
    lake, registry, run_id = lake_of(settings), registry_of(settings), current_run_id()
    logger = get_run_logger()
    spec = get_dataset(dataset)
    policy = settings.retrain_policy_for(dataset)
    days = days or training_window(lake, dataset, requested_on or LATEST, policy.train_days)
    if not days:
        raise LookupError(f"no validated day of {dataset} to retrain on")
    window = window_key(days)
    with one_at_a_time(f"retrain-{dataset}"):
        earlier = decided_retrain(lake, dataset, window)
        if earlier is not None:
            logger.info("%s window %s was decided by run %s", dataset, window, earlier["run_id"])
            return earlier["details"]["outcome"] | {"duplicate_of": earlier["run_id"]}
        with ledger_stage(lake, dataset, days[-1], "retrain", run_id) as entry:
            frame, silver_version = read_training_window(lake, dataset, days)
            labels, labels_version = known_labels(lake, spec)
            frame, from_feed = attach_labels(frame, labels, spec)
            holdout = newest_holdout(frame, spec.roles.target)
            trained = _fit(frame, spec, settings, holdout, logger)
            held_out = frame[holdout]
            fairness = settings.fairness_policy_for(dataset)
            candidate = evaluate(
                score_holdout(held_out, spec, trained.model_json(), trained.spec),
                spec.roles.protected,
                fairness,
            )
            champion_version = registry.alias(dataset, "champion")
            champion = None
            if champion_version:
                stored = registry.load(dataset, champion_version)
                champion = evaluate(
                    score_holdout(held_out, spec, stored.model_json, stored.card.feature_spec),
                    spec.roles.protected,
                    fairness,
                )
            gate = judge_candidate(
                candidate,
                champion,
                settings.gate_policy_for(dataset),
                fairness.regression_tolerance,
            )
            trained_on = {
                "table": lake.uri("silver", dataset),
                "version": silver_version,
                "ds": days,
                "labels": {"version": labels_version, "rows_labelled_by_feed": from_feed},
                "holdout": f"newest {int(holdout.sum())} labelled rows",
            }
            tags = {
                "tidewater.window": window,
                "tidewater.requested_on": requested_on or days[-1],
                "tidewater.reasons": "; ".join(reasons or [])[:4000] or "manual",
                "tidewater.champion_at_request": champion_version or "none",
                "tidewater.gate": "passed" if gate.passed else "rejected",
                "tidewater.flow_run": run_id,
            } | ({"tidewater.event": event_id} if event_id else {})
            training = registry.log_training(
                model_card_fields(dataset, spec.roles, trained, trained_on),
                trained.model_json(),
                trained.reference,
                trained.profile,
                metrics=evaluation_metrics("candidate", candidate)
                | (evaluation_metrics("champion", champion) if champion else {}),
                tags=tags,
            )
            outcome = {"window": window, "gate": "passed" if gate.passed else "rejected"}
            if gate.passed:
                card = registry.register(training, tags=tags | {"tidewater.status": "challenger"})
                _make_challenger(registry, dataset, card.version)
                outcome["challenger"] = card.version
                entry.model_version = card.version
            else:
                registry.end_training(
                    training, tags={"tidewater.gate_reasons": "; ".join(gate.reasons)[:4000]}
                )
                outcome["reasons"] = list(gate.reasons)
            entry.rows_in = len(frame)
            entry.details = {
                "window": window,
                "requested_on": requested_on,
                "reasons": reasons or [],
                "event": event_id,
                "champion": champion_version,
                "mlflow_run": training.run_id,
                "gate": gate.to_json(),
                "outcome": outcome,
            }
            entry.verdict = outcome["gate"]
        publish_markdown(
            gate_markdown(
                dataset,
                outcome.get("challenger", f"candidate (run {training.run_id[:8]})"),
                champion_version,
                gate,
                candidate,
                champion,
            ),
            key=artifact_key(f"retrain-{dataset}-{window}"),
            description=f"Retraining of {dataset} on {window}: the gate",
        )
    logger.info(
        "%s retrained on %s: %s",
        dataset,
        window,
        f"challenger {outcome['challenger']}"
        if gate.passed
        else "rejected: " + "; ".join(gate.reasons),
    )
    return outcome


def _fit(frame, spec, settings, holdout, logger):
    """Fit the candidate: in this process, or on the Dask cluster (`xgboost.dask`) when the
    window has at least `dask_train_min_rows` rows."""
    if len(frame) < settings.dask_train_min_rows:
        return fit_model(frame, spec.roles, settings.min_holdout_auc, holdout=holdout)
    with scheduler_at(dask_address_of(settings), cluster_spec_of(settings)) as address:
        logger.info("training on %d rows on the Dask cluster at %s", len(frame), address)
        return fit_model(
            frame, spec.roles, settings.min_holdout_auc, holdout=holdout, dask_address=address
        )


def _make_challenger(registry, dataset: str, version: str) -> None:
    """Name `version` the challenger; a challenger it replaces is retired, saying why."""
    replaced = registry.alias(dataset, "challenger")
    registry.set_alias(dataset, "challenger", version)
    if replaced and replaced != version:
        registry.set_version_tags(
            dataset,
            replaced,
            {
                "tidewater.status": "retired",
                "tidewater.retired_because": f"superseded by {version}",
            },
        )
