"""Monitor: drift of the scored day against the champion's reference window."""

from __future__ import annotations

from prefect import flow

from datasets import get_dataset
from flows.resources import current_run_id, lake_of, model_store_of
from flows.settings import Settings
from reports import (
    DriftPolicy,
    artifact_key,
    drift_markdown,
    drift_metric_rows,
    publish_drift_artifact,
)
from tasks.ledger import ledger_stage
from tasks.model_store import load_reference
from tasks.monitoring import assess_drift, load_scored_day, save_drift_report, write_metrics


@flow(name="monitor", flow_run_name="monitor-{dataset}-{ds}")
def monitor(dataset: str, ds: str, model_version: str, settings: Settings | None = None) -> dict:
    """Evidently drift report (features and score), metrics rows, verdict and UI artifact."""
    settings = settings or Settings()
    spec, lake, run_id = get_dataset(dataset), lake_of(settings), current_run_id()
    policy = DriftPolicy(retrain_share=settings.drift_retrain_share)
    with ledger_stage(lake, dataset, ds, "monitor", run_id) as entry:
        reference = load_reference(model_store_of(settings), dataset, model_version)
        current = load_scored_day(lake, dataset, ds, spec.roles.features, model_version)
        entry.rows_in = len(current)
        entry.model_version = model_version
        if current.empty:
            entry.verdict = "no-data"
            entry.details = {"reasons": ["no silver rows to compare on this day"]}
            return {"verdict": "no-data", "report": None, "reasons": entry.details["reasons"]}
        result, decision = assess_drift(
            reference, current, spec.roles, policy, settings.monitor_max_rows
        )
        paths = save_drift_report(
            settings.reports_uri, dataset, ds, result, decision, settings.storage_options
        )
        rows = drift_metric_rows(dataset, ds, model_version, result, decision)
        metrics_version = write_metrics(lake, rows, dataset, ds, model_version, run_id)
        publish_drift_artifact(
            drift_markdown(dataset, ds, model_version, result, decision, paths["html"]),
            key=artifact_key(f"drift-{dataset}-{ds}"),
        )
        entry.report = paths["html"]
        entry.verdict = decision.verdict.value
        entry.delta_versions = {"metrics": metrics_version}
        entry.details = {"reasons": list(decision.reasons), "drifted_share": result.drifted_share}
    return {"verdict": decision.verdict.value, "report": paths["html"], "reasons": decision.reasons}
