"""Drift reports, the retrain decision policy, and their renderings.

Builders here are pure: they return report objects and a typed verdict. Writing the rendered
strings to storage is the pipeline's job; `publish_drift_artifact` is the one side effect.
"""

from reports.artifacts import artifact_key, publish_drift_artifact
from reports.drift import MISSING, build_drift_report
from reports.metrics import METRIC_KEYS, drift_metric_rows
from reports.parse import parse_drift_snapshot
from reports.policy import Decision, DriftPolicy, Verdict, decide
from reports.render import drift_markdown, load_drift_json, render_html, render_json
from reports.result import ColumnDrift, DriftResult

__all__ = [
    "METRIC_KEYS",
    "MISSING",
    "ColumnDrift",
    "Decision",
    "DriftPolicy",
    "DriftResult",
    "Verdict",
    "artifact_key",
    "build_drift_report",
    "decide",
    "drift_markdown",
    "drift_metric_rows",
    "load_drift_json",
    "parse_drift_snapshot",
    "publish_drift_artifact",
    "render_html",
    "render_json",
]
