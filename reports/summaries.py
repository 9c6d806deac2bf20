"""Markdown summaries of a day's stages for the Prefect UI: validation (counts per failed
check, sample rows), scoring (which models, how fast, where), monitoring (the verdict, key
numbers, links) and the per-day stage summary with the row accounting. Pure builders:
values in, markdown out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports.policy import DayAssessment, format_score
from reports.result import DriftResult

MIB = 2**20


def _cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")[:200]


def _missing(value: Any) -> bool:
    return value is None or value != value  # None or NaN (ledger columns read via pandas)


def _count(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value):,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: int = 0) -> list[str]:
    """A markdown table; the last `right` columns right-aligned."""
    align = ["---"] * (len(header) - right) + ["---:"] * right
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
    ]


def validation_markdown(
    dataset: str,
    ds: str,
    rows_in: int,
    rows_valid: int,
    failed_checks: Mapping[str, int],
    samples: Sequence[Mapping[str, Any]],
    limit: float,
) -> str:
    """Counts per failed check (a row-wide check once, not per column) and sample rows."""
    quarantined = rows_in - rows_valid
    share = quarantined / rows_in if rows_in else 0.0
    lines = [
        f"# Validation: {_cell(dataset)} {ds}",
        "",
        f"- bronze rows: {rows_in:,}; valid (to silver): {rows_valid:,}; "
        f"quarantined: **{quarantined:,}** ({share:.2%}; the day fails above {limit:.0%})",
    ]
    if failed_checks:
        lines += ["", "## Failed checks", ""]
        lines += _table(["check", "rows"], [(c, f"{n:,}") for c, n in failed_checks.items()], 1)
    if samples:
        lines += ["", f"## Sample quarantined rows (first {len(samples)})", ""]
        lines += _table(
            ["row id", "file", "line", "failed checks", "values"],
            [
                (s["row_id"], s["file"], s["line"], "; ".join(s["checks"]), s["values"])
                for s in samples
            ],
        )
        lines += ["", f"All quarantined rows: lake table `quarantine/{_cell(dataset)}`, ds={ds}."]
    return "\n".join(lines) + "\n"


def scoring_markdown(dataset: str, ds: str, details: Mapping[str, Any]) -> str:
    """The models that scored the day, and how the scoring pass went."""
    lines = [
        f"# Scoring: {_cell(dataset)} {ds}",
        "",
        *_table(["model version", "role"], list(details["models"].items())),
        "",
        f"- rows: {details['rows']:,} in {len(details['shards'])} shards, "
        f"{_count(details['rows_per_second'])} rows/s",
        f"- devices: {', '.join(details['devices']) or '-'}",
        f"- retried shards: {', '.join(map(str, details['retried_shards'])) or 'none'}",
        f"- {_cell(details['cluster'])}",
    ]
    return "\n".join(lines) + "\n"


def stage_summary_markdown(
    dataset: str, ds: str, stages: Sequence[Mapping[str, Any]], accounting: Mapping[str, Any]
) -> str:
    """One row per stage (status, rows, resources) and the day's row accounting."""
    rows = [
        (
            s["stage"],
            s["status"],
            _count(s.get("rows_in")),
            _count(s.get("rows_out")),
            _count(s.get("rows_diverted")),
            s.get("model_version"),
            _seconds(s.get("wall_seconds")),
            _seconds(s.get("cpu_seconds")),
            _seconds(s.get("gpu_seconds")),
            _mebibytes(s.get("peak_memory_bytes")),
        )
        for s in stages
    ]
    a = accounting
    lines = [
        f"# Day summary: {_cell(dataset)} {ds}",
        "",
        *_table(
            [
                "stage",
                "status",
                "rows in",
                "rows out",
                "diverted",
                "model",
                "wall s",
                "CPU s",
                "GPU s",
                "peak MiB",
            ],
            rows,
            right=4,
        ),
        "",
        "## Row accounting",
        "",
        f"- landed {_count(a['landed'])} = bronze {_count(a['bronze'])} "
        f"+ rejects {_count(a['rejects'])}",
        f"- bronze {_count(a['bronze'])} = silver {_count(a['silver'])} "
        f"+ quarantine {_count(a['quarantine'])}",
        f"- silver {_count(a['silver'])} = champion predictions {_count(a['predictions'])}",
    ]
    return "\n".join(lines) + "\n"


def _seconds(value: Any) -> str:
    return "-" if _missing(value) else f"{float(value):.1f}"


def _mebibytes(value: Any) -> str:
    return "-" if _missing(value) else f"{value / MIB:,.0f}"


def monitor_markdown(
    dataset: str,
    ds: str,
    model_version: str,
    day: DayAssessment,
    drift: DriftResult,
    quality: Mapping[str, float],
    links: Mapping[str, str | None],
    fairness: Sequence[str] = (),
) -> str:
    """The monitor's artifact: the verdict and why, the key numbers (drift, quality,
    fairness) and links to the day's page, Evidently's report and the trend. `links` maps
    a title to a URL a browser can open, or to None where there is none (the path is
    then shown by the day's page)."""
    verdict = (day.verdict.value if day.verdict else "recomputed").upper()
    labelled = int(quality.get("labelled_rows", 0))
    scored = [
        f"AUC {quality['auc']:.3f}, log-loss {quality['logloss']:.3f}, "
        f"calibration gap {quality['calibration_gap']:+.3f} on {labelled:,} labelled rows"
        if "auc" in quality
        else f"{labelled:,} labelled rows: not enough for quality yet"
    ]
    lines = [
        f"# Monitoring: {_cell(dataset)} {_cell(ds)} (model {_cell(model_version)})",
        "",
        f"**Verdict: {verdict}** (drift alone: {day.drift.value}; "
        f"bias breaches: {len(day.bias_breaches)})",
        "",
        *(f"- {_cell(reason)}" for reason in day.reasons),
        f"- drifted columns: {len(drift.drifted)} of {len(drift.columns)} "
        f"({drift.current_rows:,} rows against {drift.reference_rows:,})",
        f"- quality: {scored[0]}",
        *(f"- fairness: {_cell(line)}" for line in fairness),
        "",
        *_table(
            ("column", "method", "value", "threshold", "drifted"),
            [
                (
                    c.column,
                    c.method,
                    format_score(c.value),
                    format_score(c.threshold),
                    "**yes**" if c.drifted else "no",
                )  # fmt: skip
                for c in drift.columns
            ],
            right=2,
        ),
        "",
        " · ".join(f"[{title}]({url})" for title, url in links.items() if url)
        or "Reports: run `tidewater serve` for links.",
    ]
    return "\n".join(lines) + "\n"


def backfill_markdown(title: str, status: str, days: Sequence[Mapping[str, Any]]) -> str:
    """One row per day of a backfill (outcome, stages run, flow run, rows, seconds, error)
    under `title` and the backfill's `status`."""
    ended = [day for day in days if day["state"] in ("succeeded", "failed")]
    rows = [
        (
            day["ds"],
            day["state"],
            " → ".join(day["stages"]),
            day.get("flow_run"),
            _count(day.get("rows")),
            _seconds(day.get("seconds")),
            day.get("error"),
        )
        for day in days
    ]
    failed = sum(day["state"] == "failed" for day in days)
    return "\n".join(
        [
            f"# {_cell(title)}",
            "",
            f"**{status}**: {len(ended) - failed} of {len(days)} days succeeded, {failed} failed",
            "",
            *_table(["ds", "outcome", "stages", "flow run", "rows", "seconds", "error"], rows),
        ]
    )
