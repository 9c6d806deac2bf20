"""Rendering a drift result: evidently HTML, machine-readable JSON, a markdown summary."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from reports.policy import Decision
from reports.result import ColumnDrift, DriftResult

JSON_FORMAT = "tidewater.drift/1"

# Evidently writes the report data as two one-line `var <id> = <json>;` statements inside a
# <script> element without escaping `</script>` in data values (0.7.23).
_DATA_LINE = re.compile(r"^(\s*var (?:additional_graphs_)?metric_[0-9a-f]+ = )(.*)$", re.MULTILINE)
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def render_html(result: DriftResult) -> str:
    """The evidently HTML report, with data values unable to break out of its <script> tags."""
    html = _snapshot(result).get_html_str(as_iframe=False)
    escaped, count = _DATA_LINE.subn(lambda m: m.group(1) + _escape_script_data(m.group(2)), html)
    if count != 2:
        raise RuntimeError(f"unexpected evidently HTML layout: {count} data lines, expected 2")
    return escaped


def _escape_script_data(line: str) -> str:
    # JSON has `<`, `>` and `&` only inside strings, where \uXXXX escapes mean the same
    # character, so the data is unchanged for the script but inert for the HTML parser.
    return re.sub(r"[<>&]", lambda m: _SCRIPT_UNSAFE[m.group(0)], line)


def render_json(result: DriftResult, decision: Decision | None = None) -> str:
    """Our summary (and decision, if given) plus the evidently snapshot, as one JSON document.

    `load_drift_json` reads the summary back.
    """
    document = {
        "format": JSON_FORMAT,
        "summary": {
            "columns": [asdict(c) for c in result.columns],
            "drifted_share": result.drifted_share,
            "dataset_drift": result.dataset_drift,
            "reference_rows": result.reference_rows,
            "current_rows": result.current_rows,
        },
        "decision": None if decision is None else _decision_dict(decision),
        "evidently": json.loads(_snapshot(result).json()),
    }
    return json.dumps(document)


def load_drift_json(text: str) -> DriftResult:
    """The drift result a `render_json` document holds (without the evidently snapshot)."""
    document = json.loads(text)
    if document.get("format") != JSON_FORMAT:
        raise ValueError(f"not a {JSON_FORMAT} document")
    summary = document["summary"]
    return DriftResult(
        columns=tuple(ColumnDrift(**c) for c in summary["columns"]),
        drifted_share=float(summary["drifted_share"]),
        dataset_drift=bool(summary["dataset_drift"]),
        reference_rows=int(summary["reference_rows"]),
        current_rows=int(summary["current_rows"]),
    )


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "verdict": decision.verdict.value,
        "reasons": list(decision.reasons),
        "feature_drifted_share": decision.feature_drifted_share,
        "policy": asdict(decision.policy),
    }


def _snapshot(result: DriftResult) -> Any:
    if result.snapshot is None:
        raise ValueError("the drift result carries no evidently snapshot to render")
    return result.snapshot
