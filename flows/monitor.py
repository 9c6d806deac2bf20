"""Monitor: drift of the scored day against the champion's reference window."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.resources import (
    RUN_END_HOOKS,
    current_run_id,
    lake_of,
    model_store_of,
    storage_options_of,
)
from flows.settings import current_settings
from reports import (
    DriftPolicy,
    artifact_key,
    drift_markdown,
    drift_metric_rows,
    emit_breach_event,
    publish_markdown,
)
from tasks.ledger import ledger_stage
from tasks.model_store import load_reference
from tasks.monitoring import (
    assess_drift,
    load_scored_day,
    report_url,
    save_drift_report,
    write_metrics,
)


@flow(name="monitor", flow_run_name="monitor-{dataset}-{ds}", **RUN_END_HOOKS)
def monitor(dataset: str, ds: str, model_version: str) -> dict:
    """Evidently drift report (features and score), metrics rows, verdict and UI artifact."""
    settings = current_settings()
    lake, run_id = lake_of(settings), current_run_id()
    options = storage_options_of(settings)
    policy = DriftPolicy(retrain_share=settings.drift_retrain_share)
    with ledger_stage(lake, dataset, ds, "monitor", run_id) as entry:
        spec = get_dataset(dataset)
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
        paths = save_drift_report(settings.reports_uri, dataset, ds, result, decision, options)
        rows = drift_metric_rows(dataset, ds, model_version, result, decision)
        metrics_version = write_metrics(lake, rows, dataset, ds, model_version, run_id)
        link = report_url(settings.reports_uri, paths["html"], settings.reports_url, options)
        publish_markdown(
            drift_markdown(dataset, ds, model_version, result, decision, paths["html"], link),
            key=artifact_key(f"drift-{dataset}-{ds}"),
            description=f"Drift of {dataset} ds={ds}",
        )
        if decision.verdict.value != "ok":
            emit_breach_event(
                dataset, ds, model_version, decision.verdict.value, list(decision.reasons)
            )
        entry.report = paths["html"]
        entry.verdict = decision.verdict.value
        entry.delta_versions = {"metrics": metrics_version}
        entry.details = {"reasons": list(decision.reasons), "drifted_share": result.drifted_share}
    get_run_logger().info("%s ds=%s: verdict %s", dataset, ds, decision.verdict.value)
    return {"verdict": decision.verdict.value, "report": paths["html"], "reasons": decision.reasons}
