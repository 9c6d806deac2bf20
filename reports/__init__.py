"""Drift, quality and fairness reports, the retrain decision policy, and their renderings.

Builders here are pure: they return report objects and a typed verdict. Writing the rendered
strings to storage is the pipeline's job; `publish_markdown` (a Prefect artifact) is the one
side effect.
"""

from reports.artifacts import (
    BREACH_EVENT,
    RETRAIN_EVENT,
    artifact_key,
    emit_breach_event,
    emit_retrain_request,
    publish_markdown,
)
from reports.drift import (
    MISSING,
    build_drift_report,
    drift_sample,
    import_report_libraries_in_background,
)
from reports.fairness import (
    Disparity,
    FairnessPolicy,
    FairnessResult,
    GroupMetrics,
    assess_fairness,
    fairness_metric_rows,
)
from reports.fairness_html import fairness_html
from reports.gate import (
    Evaluation,
    FairnessRegression,
    GateCheck,
    GatePolicy,
    GateResult,
    evaluate,
    fairness_regressions,
    gate_markdown,
    gate_metric_rows,
    judge_candidate,
)
from reports.metrics import METRIC_KEYS, drift_metric_rows, quality_metric_rows
from reports.parse import parse_drift_snapshot
from reports.policy import Decision, DriftPolicy, Verdict, decide
from reports.render import load_drift_json, render_html, render_json
from reports.result import ColumnDrift, DriftResult
from reports.shadow import (
    ShadowDay,
    ShadowPolicy,
    ShadowVerdict,
    compare_shadow,
    judge_shadow,
    shadow_html,
    shadow_markdown,
    shadow_metric_rows,
)
from reports.summaries import (
    backfill_markdown,
    monitor_markdown,
    scoring_markdown,
    stage_summary_markdown,
    validation_markdown,
)

__all__ = [
    "backfill_markdown",
    "BREACH_EVENT",
    "RETRAIN_EVENT",
    "METRIC_KEYS",
    "MISSING",
    "ColumnDrift",
    "Decision",
    "DriftPolicy",
    "DriftResult",
    "Verdict",
    "artifact_key",
    "build_drift_report",
    "drift_sample",
    "import_report_libraries_in_background",
    "decide",
    "drift_metric_rows",
    "emit_breach_event",
    "emit_retrain_request",
    "load_drift_json",
    "monitor_markdown",
    "parse_drift_snapshot",
    "publish_markdown",
    "quality_metric_rows",
    "render_html",
    "render_json",
    "scoring_markdown",
    "stage_summary_markdown",
    "validation_markdown",
    "Disparity",
    "FairnessPolicy",
    "FairnessResult",
    "GroupMetrics",
    "assess_fairness",
    "fairness_html",
    "fairness_metric_rows",
    "Evaluation",
    "FairnessRegression",
    "GateCheck",
    "GatePolicy",
    "GateResult",
    "evaluate",
    "fairness_regressions",
    "gate_markdown",
    "gate_metric_rows",
    "judge_candidate",
    "ShadowDay",
    "ShadowPolicy",
    "ShadowVerdict",
    "compare_shadow",
    "judge_shadow",
    "shadow_html",
    "shadow_markdown",
    "shadow_metric_rows",
]
