"""Monitor: drift, quality and fairness of a scored day, and the policy's verdict on it."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.resources import (
    RUN_END_HOOKS,
    current_run_id,
    lake_of,
    registry_of,
    store_of,
)
from flows.settings import current_settings
from reports import (
    DriftPolicy,
    artifact_key,
    decide,
    drift_metric_rows,
    emit_breach_event,
    emit_retrain_request,
    fairness_html,
    fairness_metric_rows,
    monitor_markdown,
    publish_markdown,
)
from reports.pages import day_page, trend_page
from reports.policy import DayAssessment, Verdict
from tasks.ledger import ledger_stage
from tasks.monitoring import (
    decide_day,
    decision_metric_rows,
    drift_inputs,
    fairness_summary,
    full_data_drift,
    measure_day,
    metrics_history,
    recorded_assessments,
    report_day_drift,
    report_url,
    save_drift_report,
    save_pages,
    write_metrics,
)
from tasks.registry import load_reference
from tasks.retraining import training_window


@flow(name="monitor", flow_run_name="monitor-{dataset}-{ds}", **RUN_END_HOOKS)
def monitor(dataset: str, ds: str, model_version: str, recompute: str | None = None) -> dict:
    """Drift of the day against the model's reference, quality where labels are known,
    fairness per protected group and pair of groups, the verdict under the dataset's retrain
    policy, reports, metrics rows and a UI artifact.

    `recompute` (why, e.g. "labels landed on D") recomputes an earlier day's numbers and
    keeps the verdict that day's run decided: the policy acts on the live day only.
    """
    settings = current_settings()
    lake, run_id = lake_of(settings), current_run_id()
    store = store_of(settings)
    policy = DriftPolicy(retrain_share=settings.drift_retrain_share)
    with ledger_stage(lake, dataset, ds, "monitor", run_id) as entry:
        spec = get_dataset(dataset)
        registry = registry_of(settings)
        reference = load_reference(registry, dataset, model_version)
        max_rows = settings.monitor_max_rows
        # what reads every row or imports Evidently, scikit-learn and fairlearn runs where the
        # task runner puts it (the pipeline's: two Dask workers, side by side): Evidently's
        # report of a sample, the readable one; the day's quality and fairness
        evidently_report = report_day_drift.submit(
            lake, spec, ds, model_version, drift_inputs(reference, spec.roles, max_rows),
            policy, max_rows,
        )  # fmt: skip
        measuring = measure_day.submit(
            lake, spec, ds, model_version, reference, settings.fairness_policy_for(dataset)
        )
        # the verdict is the full-data drift's (every row, from the score step's histograms;
        # models without a profile: Evidently's)
        full = full_data_drift(lake, registry, dataset, ds, model_version)
        measured = measuring.result()
        entry.rows_in = measured.rows
        entry.model_version = model_version
        if measured.rows == 0:
            evidently_report.wait()  # of no row: none
            entry.verdict = "no-data"
            entry.details = {"reasons": ["no silver rows to compare on this day"]}
            return {"verdict": "no-data", "report": None, "reasons": entry.details["reasons"]}
        result = full or evidently_report.result().result
        drift = decide(result, policy)
        bias, quality = measured.bias, measured.quality
        breaches = bias.breach_lines() if bias else ()
        today = DayAssessment(ds=ds, drift=drift.verdict, bias_breaches=breaches)
        if recompute:
            recorded = recorded_assessments(lake, dataset, ds, _next_day(ds))
            today = replace(today, verdict=recorded[0].verdict if recorded else None)
        else:
            today = decide_day(lake, dataset, today, settings.retrain_policy_for(dataset))
        reasons = [*today.reasons, *drift.reasons]
        sample = evidently_report.result()
        evidently = save_drift_report(settings.reports_uri, dataset, ds, sample, store)
        rows = (
            drift_metric_rows(dataset, ds, model_version, result, drift)
            + quality
            + (fairness_metric_rows(dataset, ds, model_version, bias.day) if bias else [])
            + decision_metric_rows(dataset, ds, model_version, today)
        )
        metrics_version = write_metrics(lake, rows, dataset, ds, model_version, run_id)
        quality_values = {row["metric"].removeprefix("quality:"): row["value"] for row in quality}
        paths = save_pages(
            settings.reports_uri,
            dataset,
            ds,
            day_page(
                dataset,
                ds,
                model_version,
                today,
                result,
                quality_values,
                fairness_html(bias.day) if bias else "",
            ),
            {
                "dataset": dataset,
                "ds": ds,
                "model_version": model_version,
                "decision": asdict(today),
                "drift": [asdict(column) for column in result.columns],
                "drift_rows": {"current": result.current_rows, "reference": result.reference_rows},
                "evidently_sample_rows": sample.result.current_rows,
                "quality": quality_values,
                "fairness": bias.day.to_json() if bias else None,
                "evidently_report": evidently["html"],
            },
            trend_page(dataset, metrics_history(lake, dataset)),
            store,
        )
        links = {
            title: report_url(settings.reports_uri, paths[kind], settings.reports_url, store)
            for title, kind in (("Day report", "html"), ("Trend", "trend"))
        } | {
            "Evidently report (sample)": report_url(
                settings.reports_uri, evidently["html"], settings.reports_url, store
            )
        }
        publish_markdown(
            monitor_markdown(
                dataset,
                ds,
                model_version,
                today,
                result,
                quality_values,
                links,
                fairness_summary(bias),
            ),
            key=artifact_key(f"monitor-{dataset}-{ds}"),
            description=f"Monitoring of {dataset} ds={ds}",
        )
        verdict = today.verdict.value if today.verdict else "recomputed"
        if not recompute and verdict != "ok":
            emit_breach_event(dataset, ds, model_version, verdict, reasons)
        requested = None
        if not recompute and today.verdict is Verdict.RETRAIN:
            requested = _request_retrain(lake, dataset, ds, model_version, reasons)
        entry.report = paths["html"]
        entry.verdict = verdict
        entry.delta_versions = {"metrics": metrics_version}
        entry.details = {
            "reasons": reasons,
            "drift_verdict": drift.verdict.value,
            "drifted_share": result.drifted_share,
        } | ({"recomputed": recompute} if recompute else {})
        if requested:
            entry.details["retrain_requested"] = requested
    get_run_logger().info("%s ds=%s: verdict %s", dataset, ds, verdict)
    return {
        "verdict": verdict,
        "report": paths["html"],
        "reasons": reasons,
        "retrain_requested": requested,
    }


def _request_retrain(lake, dataset: str, ds: str, champion: str, reasons: list[str]) -> dict:
    """Emit the retrain request the retrain deployment's trigger answers: the window the
    retrain policy gives (its last `train_days` validated days up to `ds`)."""
    policy = current_settings().retrain_policy_for(dataset)
    days = training_window(lake, dataset, ds, policy.train_days)
    requested_at = datetime.now(UTC).isoformat()
    event = emit_retrain_request(dataset, ds, days, reasons, champion, asdict(policy))
    get_run_logger().info("%s ds=%s: retrain requested on %s (event %s)", dataset, ds, days, event)
    return {"event": event, "days": days, "requested_at": requested_at}


def _next_day(ds: str) -> str:
    return (date.fromisoformat(ds) + timedelta(days=1)).isoformat()
