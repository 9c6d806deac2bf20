"""The operator's pages: one per monitored day (decision, drift, quality, fairness) and a
trend across days, as self-contained HTML (inline SVG, no scripts). Every value and column
name is escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import pandas as pd

from reports.policy import DayAssessment, format_score
from reports.result import DriftResult

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.breach { background: #fde2e1; }
.verdict-ok { color: #1a7f37; } .verdict-warn { color: #9a6700; }
.verdict-retrain { color: #cf222e; }
svg text { font-size: 11px; }
"""

PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a")


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], breached=()) -> str:
    head = "".join(f"<th>{escape(str(name))}</th>" for name in header)
    lines = []
    for index, row in enumerate(rows):
        cells = "".join(
            f"<td class='num'>{escape(_number(v))}</td>"
            if isinstance(v, float)
            else f"<td>{escape(str(v))}</td>"
            for v in row
        )
        mark = " class='breach'" if index in breached else ""
        lines.append(f"<tr{mark}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _number(value: float) -> str:
    return "-" if value != value else format_score(value)


def day_page(
    dataset: str,
    ds: str,
    model_version: str,
    day: DayAssessment,
    drift: DriftResult,
    quality: Mapping[str, float],
    fairness_section: str = "",
    evidently_report: str | None = "drift.html",
) -> str:
    """The day's page: the verdict and why, drift per column, quality where labels are
    known, the fairness section (an already escaped fragment) and a link to the Evidently
    report of the sample."""
    verdict = day.verdict.value if day.verdict else "recomputed"
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in day.reasons) or "<li>-</li>"
    drift_rows = [
        (c.column, c.method, float(c.value), float(c.threshold), "yes" if c.drifted else "no")
        for c in drift.columns
    ]
    drifted = {i for i, c in enumerate(drift.columns) if c.drifted}
    quality_rows = [(name, float(value)) for name, value in quality.items()]
    link = (
        f"<p>Evidently's report of the sample: <a href='{escape(evidently_report)}'>"
        f"{escape(evidently_report)}</a></p>"
        if evidently_report
        else ""
    )
    body = (
        f"<h1>{escape(dataset)} · {escape(ds)} · model {escape(model_version)}</h1>"
        f"<h2>Decision: <span class='verdict-{escape(verdict)}'>{escape(verdict)}</span></h2>"
        f"<p>Drift alone said <b>{escape(day.drift.value)}</b>; bias breaches: "
        f"{escape('; '.join(day.bias_breaches) or 'none')}.</p><ul>{reasons}</ul>"
        f"<h2>Drift ({drift.current_rows:,} rows against {drift.reference_rows:,})</h2>"
        + _table(("column", "method", "value", "threshold", "drifted"), drift_rows, drifted)
        + "<h2>Quality where labels are known</h2>"
        + _table(("metric", "value"), quality_rows)
        + (f"<h2>Fairness</h2>{fairness_section}" if fairness_section else "")
        + link
    )
    return _page(f"{dataset} {ds}", body)


def trend_page(dataset: str, metrics: pd.DataFrame) -> str:
    """Every day's numbers of `dataset` across days (from the long metrics table): drift
    per column, quality, fairness disparities, and the verdicts."""
    if metrics.empty:
        return _page(f"{dataset} trend", f"<h1>{escape(dataset)}: no monitored day yet</h1>")
    frame = metrics.sort_values("ds")
    charts = []
    drift = frame[frame["metric"].str.startswith("drift:")]
    if not drift.empty:
        charts.append(
            _chart("Drift per column (value / threshold: above 1 is drifted)", drift, "column", 1.0)
        )
    quality = frame[frame["metric"].isin(["quality:auc", "quality:calibration_gap"])]
    if not quality.empty:
        charts.append(_chart("Quality where labels are known", quality, "metric"))
    disparities = frame[frame["metric"].str.match(r"^fairness:[a-z_]+$") & frame["group"].isna()]
    for metric, rows in disparities.groupby("metric"):
        threshold = rows["threshold"].dropna()
        limit = float(threshold.iloc[0]) if not threshold.empty else None
        charts.append(_chart(f"{metric} per grouping", rows, "column", limit, ratio=False))
    verdicts = frame[frame["metric"] == "decision:verdict"]
    names = {0.0: "ok", 1.0: "warn", 2.0: "retrain"}
    verdict_rows = [
        (ds, names.get(value, "?"))
        for ds, value in zip(verdicts["ds"], verdicts["value"], strict=True)
    ]
    body = (
        f"<h1>{escape(dataset)}: monitoring across days</h1>"
        + "".join(charts)
        + "<h2>Verdicts</h2>"
        + _table(("ds", "verdict"), verdict_rows)
    )
    return _page(f"{dataset} trend", body)


def _chart(
    title: str,
    rows: pd.DataFrame,
    series_by: str,
    limit: float | None = None,
    ratio: bool = True,
) -> str:
    """An inline SVG line chart of `value` (over `threshold` where `ratio`) per day, one
    line per `series_by` value, with the limit as a dashed line."""
    days = sorted(rows["ds"].unique())
    values = rows["value"] / rows["threshold"] if ratio else rows["value"]
    frame = rows.assign(y=values.astype(float)).dropna(subset=["y"])
    if frame.empty:
        return ""
    top = max(float(frame["y"].max()), limit or 0.0) * 1.1 or 1.0
    bottom = min(float(frame["y"].min()), 0.0)
    width, height, left, pad = 720, 240, 48, 20

    def x(ds: str) -> float:
        return left + (width - left - pad) * (days.index(ds) / max(len(days) - 1, 1))

    def y(value: float) -> float:
        return height - pad - (height - 2 * pad) * (value - bottom) / ((top - bottom) or 1.0)

    parts = [
        f"<line x1='{left}' y1='{y(bottom)}' x2='{width - pad}' y2='{y(bottom)}' stroke='#999'/>"
    ]
    if limit is not None:
        parts.append(
            f"<line x1='{left}' y1='{y(limit)}' x2='{width - pad}' y2='{y(limit)}' "
            f"stroke='#cf222e' stroke-dasharray='4 3'/>"
        )
    legend = []
    for index, (name, series) in enumerate(frame.groupby(series_by, dropna=False)):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(
            f"{x(ds):.1f},{y(v):.1f}" for ds, v in zip(series["ds"], series["y"], strict=True)
        )
        label = escape(str(name))
        parts.append(
            f"<polyline fill='none' stroke='{colour}' points='{points}'>"
            f"<title>{label}</title></polyline>"
        )
        legend.append(f"<span style='color:{colour}'>■ {label}</span>")
    for ds in (days[0], days[-1]):
        parts.append(
            f"<text x='{x(ds):.1f}' y='{height - 4}' text-anchor='middle'>{escape(ds)}</text>"
        )
    parts.append(f"<text x='4' y='{y(top / 1.1):.1f}'>{escape(_number(top / 1.1))}</text>")
    svg = f"<svg width='{width}' height='{height}' role='img'>{''.join(parts)}</svg>"
    return f"<h2>{escape(title)}</h2>{svg}<p>{' '.join(legend)}</p>"
