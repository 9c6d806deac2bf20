"""Shadow scoring: the challenger scored beside the champion on every row of real batches.
Per day: how often they agree, how far their scores lie apart, realised quality where labels
arrived and fairness deltas; after the window: promote, retire or wait. Pure builders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Any, Literal

import numpy as np
import pandas as pd

from reports.fairness import FairnessPolicy, assess_fairness
from reports.gate import DISPARITY_METRICS, GATED_DISPARITIES, fairness_regressions, quality_of
from reports.profile import psi
from reports.summaries import _cell, _table

PSI_BINS = 10
SHADOW_QUALITY = ("auc", "logloss")

BiasDelta = tuple[str, str, float | None, float | None]
"""(metric, grouping column, champion value, challenger value)."""


@dataclass(frozen=True)
class ShadowPolicy:
    """How long a challenger is shadow-scored and what it is judged on."""

    shadow_days: int = 3
    max_auc_drop: float = 0.01
    min_labelled_rows: int = 200
    threshold: float = 0.5
    fairness_metrics: tuple[str, ...] = GATED_DISPARITIES  # as in `GatePolicy`

    def __post_init__(self) -> None:
        object.__setattr__(self, "fairness_metrics", tuple(self.fairness_metrics))  # from JSON
        unknown = set(self.fairness_metrics) - set(DISPARITY_METRICS)
        if unknown:
            raise ValueError(f"fairness_metrics: unknown {sorted(unknown)}")
        if self.shadow_days < 1:
            raise ValueError(f"shadow_days must be at least 1, got {self.shadow_days}")
        if not self.max_auc_drop >= 0:
            raise ValueError(f"max_auc_drop must be non-negative, got {self.max_auc_drop}")
        if self.min_labelled_rows < 1:
            raise ValueError(f"min_labelled_rows must be at least 1, got {self.min_labelled_rows}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class ShadowDay:
    """Champion and challenger on one day's rows (those both scored).

    `agreement`: share of rows both models decide alike at the policy's threshold.
    `score_psi`: PSI of the challenger's scores against the champion's over 10 quantile bins
    of the champion's scores. Quality is {} where fewer than `min_labelled_rows` labels or one
    class arrived. `fairness_regressions`: the challenger's breaches the champion does not
    share on these rows, or is worse on by more than the tolerance (`fairness_regressions`
    of `reports.gate`)."""

    ds: str
    rows: int
    agreement: float
    mean_abs_score_diff: float
    score_psi: float
    champion_mean_score: float
    challenger_mean_score: float
    labelled: int
    champion_quality: dict[str, float]
    challenger_quality: dict[str, float]
    bias_deltas: tuple[BiasDelta, ...]
    fairness_regressions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ds": self.ds,
            "rows": self.rows,
            "agreement": self.agreement,
            "mean_abs_score_diff": self.mean_abs_score_diff,
            "score_psi": self.score_psi,
            "champion_mean_score": self.champion_mean_score,
            "challenger_mean_score": self.challenger_mean_score,
            "labelled": self.labelled,
            "champion_quality": dict(self.champion_quality),
            "challenger_quality": dict(self.challenger_quality),
            "bias_deltas": [list(d) for d in self.bias_deltas],
            "fairness_regressions": list(self.fairness_regressions),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShadowDay:
        return cls(
            ds=str(data["ds"]),
            rows=int(data["rows"]),
            agreement=float(data["agreement"]),
            mean_abs_score_diff=float(data["mean_abs_score_diff"]),
            score_psi=float(data["score_psi"]),
            champion_mean_score=float(data["champion_mean_score"]),
            challenger_mean_score=float(data["challenger_mean_score"]),
            labelled=int(data["labelled"]),
            champion_quality={k: float(v) for k, v in data["champion_quality"].items()},
            challenger_quality={k: float(v) for k, v in data["challenger_quality"].items()},
            bias_deltas=tuple(
                (str(m), str(c), _optional(a), _optional(b)) for m, c, a, b in data["bias_deltas"]
            ),
            fairness_regressions=tuple(str(line) for line in data["fairness_regressions"]),
        )


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def compare_shadow(
    ds: str,
    frame: pd.DataFrame,
    protected: Sequence[str],
    fairness_policy: FairnessPolicy,
    policy: ShadowPolicy,
    champion_column: str = "champion_score",
    challenger_column: str = "challenger_score",
    label_column: str = "label",
) -> ShadowDay:
    """The day's comparison over the rows both models scored. Labels are 1.0/0.0, NaN where
    unknown (a missing label column means none). Fairness uses `fairness_policy` for both
    models (its `regression_tolerance` is the tolerance)."""
    champion = pd.to_numeric(frame[champion_column], errors="coerce").to_numpy(dtype="float64")
    challenger = pd.to_numeric(frame[challenger_column], errors="coerce").to_numpy(dtype="float64")
    both = ~np.isnan(champion) & ~np.isnan(challenger)
    frame = frame[both]
    champion, challenger = champion[both], challenger[both]
    if label_column in frame.columns:
        label = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(dtype="float64")
    else:
        label = np.full(len(frame), np.nan)
    known = ~np.isnan(label)
    if ((label[known] != 0) & (label[known] != 1)).any():
        raise ValueError("labels must be 1.0, 0.0 or NaN")

    deltas: tuple[BiasDelta, ...] = ()
    regressions: tuple[str, ...] = ()
    if protected and len(frame):
        before = assess_fairness(frame, protected, fairness_policy, champion_column, label_column)
        after = assess_fairness(frame, protected, fairness_policy, challenger_column, label_column)
        values = {(d.metric, d.attributes): d.value for d in before.disparities}
        deltas = tuple(
            (d.metric, d.column, values.get((d.metric, d.attributes)), d.value)
            for d in after.disparities
        )
        tolerance = fairness_policy.regression_tolerance
        regressions = tuple(
            r.describe()
            for r in fairness_regressions(after, before, tolerance, policy.fairness_metrics)
        )

    rows = len(frame)
    return ShadowDay(
        ds=str(ds),
        rows=rows,
        agreement=_mean((champion >= policy.threshold) == (challenger >= policy.threshold)),
        mean_abs_score_diff=_mean(np.abs(champion - challenger)),
        score_psi=score_psi(champion, challenger),
        champion_mean_score=_mean(champion),
        challenger_mean_score=_mean(challenger),
        labelled=int(known.sum()),
        champion_quality=_realised(label[known], champion[known], policy),
        challenger_quality=_realised(label[known], challenger[known], policy),
        bias_deltas=deltas,
        fairness_regressions=regressions,
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _realised(labels: np.ndarray, scores: np.ndarray, policy: ShadowPolicy) -> dict[str, float]:
    if len(labels) < policy.min_labelled_rows or len(np.unique(labels)) < 2:
        return {}
    quality = quality_of(labels, scores)
    return {name: quality[name] for name in SHADOW_QUALITY}


def score_psi(champion: np.ndarray, challenger: np.ndarray) -> float:
    """PSI of the challenger's scores against the champion's, over 10 quantile bins of the
    champion's scores (tied quantiles merged; empty bins floored as in `reports.profile`)."""
    if len(champion) == 0 or len(challenger) == 0:
        return float("nan")
    edges = np.unique(np.quantile(champion, np.linspace(0, 1, PSI_BINS + 1))[1:-1])
    expected = np.bincount(np.searchsorted(edges, champion, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, challenger, side="right"), minlength=len(edges) + 1)
    return float(psi(expected, actual))


@dataclass(frozen=True)
class ShadowVerdict:
    """What to do with the challenger after the days seen so far, and why."""

    decision: Literal["promote", "retire", "wait"]
    reasons: tuple[str, ...]
    days: int


def judge_shadow(days: Sequence[ShadowDay], policy: ShadowPolicy) -> ShadowVerdict:
    """Wait until `policy.shadow_days` days are in (a re-run day counts once, its last
    comparison), then retire on any fairness regression or on a pooled realised AUC (days
    where both models have one, weighted by labelled rows) more than `max_auc_drop` below
    the champion's; promote otherwise."""
    by_day = {d.ds: d for d in days}
    seen = [by_day[ds] for ds in sorted(by_day)]
    regressions = [f"{d.ds}: {line}" for d in seen for line in d.fairness_regressions]
    if len(seen) < policy.shadow_days:
        progress = f"shadow day {len(seen)} of {policy.shadow_days}"
        return ShadowVerdict("wait", (progress, *regressions), len(seen))
    if regressions:
        return ShadowVerdict("retire", tuple(f"fairness: {r}" for r in regressions), len(seen))

    rows = sum(d.rows for d in seen)
    agreement = sum(d.agreement * d.rows for d in seen) / rows if rows else float("nan")
    window = f"{len(seen)} shadow days, {rows:,} rows; agreement {agreement:.2f}"
    judged = [d for d in seen if "auc" in d.champion_quality and "auc" in d.challenger_quality]
    labelled = sum(d.labelled for d in judged)
    if not judged:
        arrived = sum(d.labelled for d in seen)
        labels = (
            "no labels arrived in the window"
            if arrived == 0
            else f"labels on {arrived:,} rows, never {policy.min_labelled_rows:,} of both "
            "classes on one day"
        )
        reasons = (window, f"{labels}: judged on fairness only", _fairness_line(seen))
        return ShadowVerdict("promote", reasons, len(seen))
    champion = sum(d.champion_quality["auc"] * d.labelled for d in judged) / labelled
    challenger = sum(d.challenger_quality["auc"] * d.labelled for d in judged) / labelled
    realised = (
        f"realised AUC {challenger:.3f} vs champion {champion:.3f} on {labelled:,} labelled "
        f"rows over {len(judged)} day{'s' if len(judged) != 1 else ''}"
    )
    if challenger < champion - policy.max_auc_drop:
        reason = (
            f"quality: {realised}: {champion - challenger:.3f} below "
            f"(tolerance {policy.max_auc_drop:.3f})"
        )
        return ShadowVerdict("retire", (reason,), len(seen))
    return ShadowVerdict("promote", (f"{window}; {realised}", _fairness_line(seen)), len(seen))


def _fairness_line(days: Sequence[ShadowDay]) -> str:
    if not any(d.bias_deltas for d in days):
        return "no protected attributes compared"
    return "no fairness regression against the champion on any day"


def shadow_metric_rows(
    dataset: str, ds: date | str, challenger_version: str, day: ShadowDay
) -> list[dict[str, Any]]:
    """The day as rows of the long `lake/metrics` table (`METRIC_KEYS`), all under the
    challenger's version: `shadow:rows`, `shadow:labelled_rows`, `shadow:agreement`,
    `shadow:mean_abs_score_diff`, `shadow:score_psi`; `shadow:auc` and `shadow:logloss`
    with `column` "champion"/"challenger" where defined; `shadow:fairness_delta` (challenger
    minus champion) per disparity both have, with `column` the grouping and `group` the
    disparity's name."""
    when = ds.isoformat() if isinstance(ds, date) else str(ds)

    def row(metric: str, value: float, column: str | None = None, group: str | None = None):
        return {
            "dataset": dataset,
            "ds": when,
            "model_version": challenger_version,
            "metric": f"shadow:{metric}",
            "column": column,
            "group": group,
            "value": float(value),
            "threshold": None,
            "breached": False,
        }

    rows = [
        row("rows", day.rows),
        row("labelled_rows", day.labelled),
        row("agreement", day.agreement),
        row("mean_abs_score_diff", day.mean_abs_score_diff),
        row("score_psi", day.score_psi),
    ]
    for role, quality in (
        ("champion", day.champion_quality),
        ("challenger", day.challenger_quality),
    ):
        rows += [row(name, quality[name], role) for name in SHADOW_QUALITY if name in quality]
    rows += [
        row("fairness_delta", after - before, column, metric)
        for metric, column, before, after in day.bias_deltas
        if before is not None and after is not None
    ]
    return [r for r in rows if r["value"] == r["value"]]  # no NaN values (a day of no rows)


def shadow_markdown(
    dataset: str,
    ds: str,
    champion_version: str,
    challenger_version: str,
    day: ShadowDay,
    verdict: ShadowVerdict,
) -> str:
    """The shadow step's Prefect artifact: the verdict so far and the day's comparison."""
    lines = [
        f"# Shadow: {_cell(dataset)} {_cell(ds)}: challenger {_cell(challenger_version)} "
        f"beside champion {_cell(champion_version)}",
        "",
        f"**Decision: {verdict.decision.upper()}** after {verdict.days} shadow "
        f"day{'s' if verdict.days != 1 else ''}",
        "",
        *(f"- {_cell(reason)}" for reason in verdict.reasons),
        "",
        "## The day",
        "",
        *_table(("measure", "champion", "challenger"), _day_rows(day), right=2),
        "",
        f"- agreement at the decision threshold: {day.agreement:.3f}; mean |score difference|: "
        f"{day.mean_abs_score_diff:.3f}; score PSI: {day.score_psi:.3f}",
    ]
    if day.bias_deltas:
        lines += [
            "",
            "## Fairness, challenger against champion",
            "",
            *_table(("disparity", "grouping", "champion", "challenger"), _delta_rows(day), 2),
        ]
    lines += [f"- **fairness regression**: {_cell(line)}" for line in day.fairness_regressions]
    return "\n".join(lines) + "\n"


def _day_rows(day: ShadowDay) -> list[tuple[str, str, str]]:
    rows = [
        ("rows", f"{day.rows:,}", f"{day.rows:,}"),
        ("labelled rows", f"{day.labelled:,}", f"{day.labelled:,}"),
        ("mean score", _number(day.champion_mean_score), _number(day.challenger_mean_score)),
    ]
    for name in SHADOW_QUALITY:
        rows.append(
            (
                name,
                _number(day.champion_quality.get(name)),
                _number(day.challenger_quality.get(name)),
            )
        )
    return rows


def _delta_rows(day: ShadowDay) -> list[tuple[str, str, str, str]]:
    return [(m, c, _number(a), _number(b)) for m, c, a, b in day.bias_deltas]


def _number(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


_TABLE = "border-collapse:collapse;margin:0.5em 0;font-size:0.9em"
_CELL = "border:1px solid #ccc;padding:2px 6px"
_NUM = _CELL + ";text-align:right"
_DECISION_COLOUR = {"promote": "#1a7f37", "wait": "#9a6700", "retire": "#cf222e"}


def shadow_html(
    dataset: str,
    ds: str,
    champion_version: str,
    challenger_version: str,
    day: ShadowDay,
    verdict: ShadowVerdict,
) -> str:
    """An HTML fragment (no <html>/<body>) for the day's page: the verdict, the day's
    comparison and the fairness deltas. No script, no external resource; every value is
    escaped."""
    colour = _DECISION_COLOUR[verdict.decision]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in verdict.reasons)
    parts = [
        '<section class="tw-shadow">',
        f"<h2>Shadow: challenger {escape(challenger_version)} beside champion "
        f"{escape(champion_version)} ({escape(dataset)} {escape(ds)})</h2>",
        f"<p>Decision after {verdict.days} shadow day(s): "
        f"<b style='color:{colour}'>{escape(verdict.decision)}</b></p>",
        f"<ul>{reasons}</ul>",
        f"<p>Agreement at the decision threshold {day.agreement:.3f}; mean |score difference| "
        f"{day.mean_abs_score_diff:.3f}; score PSI {day.score_psi:.3f}.</p>",
        _html_table(("measure", "champion", "challenger"), _day_rows(day)),
    ]
    if day.bias_deltas:
        parts.append("<h3>Fairness, challenger against champion</h3>")
        parts.append(
            _html_table(("disparity", "grouping", "champion", "challenger"), _delta_rows(day))
        )
    if day.fairness_regressions:
        items = "".join(f"<li>{escape(line)}</li>" for line in day.fairness_regressions)
        parts.append(f"<p style='color:#cf222e'>Fairness regressions:</p><ul>{items}</ul>")
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th style='{_CELL}'>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='{_NUM if i >= len(header) - 2 else _CELL}'>{escape(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table style='{_TABLE}'><tr>{head}</tr>{body}</table>"
