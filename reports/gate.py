"""The retraining gate: a candidate and the champion scored on the same held-out rows become
two evaluations (quality and fairness), and the gate decides whether the candidate may become
the challenger. Pure builders: frames in, evaluations, a typed verdict, markdown and metrics
rows out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from reports.fairness import (
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    DEMOGRAPHIC_PARITY_RATIO,
    EQUALIZED_ODDS_DIFFERENCE,
    Disparity,
    FairnessPolicy,
    FairnessResult,
    assess_fairness,
)
from reports.summaries import _cell, _table

QUALITY_METRICS = ("auc", "logloss", "brier", "calibration_error")
CALIBRATION_BINS = 10
NO_LABELS = "no labelled held-out rows to judge quality on"
DISPARITY_METRICS = (
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    DEMOGRAPHIC_PARITY_RATIO,
    EQUALIZED_ODDS_DIFFERENCE,
)
GATED_DISPARITIES = (DEMOGRAPHIC_PARITY_RATIO, EQUALIZED_ODDS_DIFFERENCE)


@dataclass(frozen=True)
class GatePolicy:
    """How much worse than the champion a candidate may be on the same held-out rows.

    Fairness uses `FairnessPolicy.regression_tolerance` (see `fairness_regressions`) on the
    disparities named in `fairness_metrics`. By default the scale-free ones: demographic
    parity *ratio* (the four-fifths rule) and equalized odds (conditioned on the true label);
    the demographic parity *difference* is reported but not gated, because it grows with the
    base rate: a candidate fitted to a richer population selects more people in every group
    and widens the difference while keeping the ratio."""

    max_auc_drop: float = 0.01
    max_logloss_rise: float = 0.02
    max_calibration_error_rise: float = 0.02
    fairness_metrics: tuple[str, ...] = GATED_DISPARITIES

    def __post_init__(self) -> None:
        object.__setattr__(self, "fairness_metrics", tuple(self.fairness_metrics))  # from JSON
        unknown = set(self.fairness_metrics) - set(DISPARITY_METRICS)
        if unknown:
            raise ValueError(f"fairness_metrics: unknown {sorted(unknown)}")
        for name in ("max_auc_drop", "max_logloss_rise", "max_calibration_error_rise"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be non-negative, got {value}")


@dataclass(frozen=True)
class Evaluation:
    """One model's scores on the held-out rows.

    `rows` counts the scored rows, `labelled` those with a known label. `quality` holds `auc`
    (both classes needed), `logloss`, `brier` and `calibration_error` (expected calibration
    error over 10 equal-width score bins); keys are absent where undefined."""

    rows: int
    labelled: int
    quality: dict[str, float]
    fairness: FairnessResult | None

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "labelled": self.labelled,
            "quality": dict(self.quality),
            "fairness": None if self.fairness is None else self.fairness.to_json(),
        }


def evaluate(
    frame: pd.DataFrame,
    protected: Sequence[str],
    fairness_policy: FairnessPolicy,
    score_column: str = "score",
    label_column: str = "label",
) -> Evaluation:
    """Quality and fairness of `frame`'s scores. Labels are 1.0/0.0, NaN where unknown (a
    missing label column means none); rows without a score are not counted. Fairness is
    None without protected attributes."""
    score = pd.to_numeric(frame[score_column], errors="coerce").to_numpy(dtype="float64")
    scored = ~np.isnan(score)
    if label_column in frame.columns:
        label = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(dtype="float64")
    else:
        label = np.full(len(frame), np.nan)
    known = scored & ~np.isnan(label)
    if ((label[known] != 0) & (label[known] != 1)).any():
        raise ValueError("labels must be 1.0, 0.0 or NaN")
    fairness = (
        assess_fairness(frame, protected, fairness_policy, score_column, label_column)
        if protected
        else None
    )
    return Evaluation(
        rows=int(scored.sum()),
        labelled=int(known.sum()),
        quality=quality_of(label[known], score[known]),
        fairness=fairness,
    )


def quality_of(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC (both classes needed), log-loss, Brier score and expected calibration error of
    probabilities `scores` against 0/1 `labels`; {} without labels."""
    if len(labels) == 0:
        return {}
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score  # seconds to import

    p = np.clip(scores, 0.0, 1.0)
    quality = {}
    if len(np.unique(labels)) == 2:
        quality["auc"] = float(roc_auc_score(labels, p))
    quality["logloss"] = float(log_loss(labels, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    quality["brier"] = float(brier_score_loss(labels, p, pos_label=1))
    quality["calibration_error"] = expected_calibration_error(labels, p)
    return quality


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """Σ over 10 equal-width score bins of (bin share) × |mean score − positive rate|.

    Hand-written: scikit-learn's `calibration_curve` drops empty bins and returns no counts."""
    bins = np.minimum((scores * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    score_sums = np.bincount(bins, weights=scores, minlength=CALIBRATION_BINS)
    label_sums = np.bincount(bins, weights=labels, minlength=CALIBRATION_BINS)
    return float(np.abs(score_sums - label_sums).sum() / len(labels))


@dataclass(frozen=True)
class FairnessRegression:
    """A disparity of a new model that breaches its threshold and is not excused by the
    champion's on the same rows; `champion` is None where the champion has no value."""

    disparity: Disparity
    champion: Disparity | None
    tolerance: float
    has_champion: bool = True

    def describe(self) -> str:
        d, c = self.disparity, self.champion
        op = ">" if d.upper_bound else "<"
        head = f"{d.metric} of {d.column} {d.value:.2f} {op} {d.threshold:g}"
        if not self.has_champion:
            interval = f" (interval {d.ci_low:.2f}–{d.ci_high:.2f})" if d.ci_low is not None else ""
            return f"{head}{interval}, no champion to compare with"
        if c is None or c.value is None:
            return f"{head}, the champion has no value on the same rows"
        return f"{head}, champion {c.value:.2f} on the same rows (tolerance {self.tolerance:g})"


def fairness_regressions(
    new: FairnessResult | None,
    champion: FairnessResult | None,
    tolerance: float,
    metrics: Collection[str] = GATED_DISPARITIES,
) -> tuple[FairnessRegression, ...]:
    """The breaches of `new` that count against it, both scored on the same rows.

    A breach (`Disparity.breached`, which applies the policy's interval rule) counts unless
    the champion breaches the same disparity too and `new` is no worse than it by more than
    `tolerance`: real data breaches the four-fifths rule with good models, so a breach shared
    at about the same level is the data's, not the new model's. A breach the champion has no
    value for counts. Without a champion result every breach counts. Unlike `regressions`
    (a day against the model's own holdout) the estimates are compared, not the interval
    bounds: on the same rows the row sampling noise is shared. Only disparities named in
    `metrics` count (see `GatePolicy`)."""
    if new is None:
        return ()
    breaches = [d for d in new.breaches if d.metric in metrics]
    if champion is None:
        return tuple(FairnessRegression(d, None, tolerance, False) for d in breaches)
    baseline = {(d.metric, d.attributes): d for d in champion.disparities}
    found = []
    for d in breaches:
        before = baseline.get((d.metric, d.attributes))
        if before is not None and before.value is not None and before.breached:
            worse = d.value - before.value if d.upper_bound else before.value - d.value
            if worse <= tolerance:
                continue
        found.append(FairnessRegression(d, before, tolerance))
    return tuple(found)


@dataclass(frozen=True)
class GateCheck:
    """One line of the gate's table."""

    name: str
    candidate: float | None
    champion: float | None
    limit: str
    passed: bool


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: `reasons` has one line per failed check."""

    passed: bool
    reasons: tuple[str, ...]
    checks: tuple[GateCheck, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "checks": [asdict(c) for c in self.checks],
        }


_QUALITY_RULES = (
    # metric, readable name, policy field, True when larger is better
    ("auc", "AUC", "max_auc_drop", True),
    ("logloss", "log-loss", "max_logloss_rise", False),
    ("calibration_error", "calibration error", "max_calibration_error_rise", False),
)


def judge_candidate(
    candidate: Evaluation,
    champion: Evaluation | None,
    policy: GatePolicy,
    fairness_tolerance: float,
) -> GateResult:
    """Whether `candidate` may become the challenger, against `champion` scored on the same
    rows (None for a first model, which is judged on its own numbers)."""
    checks: list[GateCheck] = []
    reasons: list[str] = []
    if candidate.labelled == 0:
        checks.append(
            GateCheck("labelled rows", 0.0, _labelled(champion), "> 0 labelled rows", False)
        )
        reasons.append(f"quality: {NO_LABELS}")
    else:
        for check, reason in _quality_checks(candidate, champion, policy):
            checks.append(check)
            if reason:
                reasons.append(f"quality: {reason}")
    for check, reason in _fairness_checks(
        candidate, champion, fairness_tolerance, policy.fairness_metrics
    ):
        checks.append(check)
        if reason:
            reasons.append(f"fairness: {reason}")
    return GateResult(passed=not reasons, reasons=tuple(reasons), checks=tuple(checks))


def _labelled(evaluation: Evaluation | None) -> float | None:
    return None if evaluation is None else float(evaluation.labelled)


def _quality_checks(
    candidate: Evaluation, champion: Evaluation | None, policy: GatePolicy
) -> list[tuple[GateCheck, str | None]]:
    out = []
    for metric, name, field, higher_is_better in _QUALITY_RULES:
        mine = candidate.quality.get(metric)
        theirs = None if champion is None else champion.quality.get(metric)
        tolerance = getattr(policy, field)
        if mine is None:
            limit = "defined on the held-out rows"
            reason = f"{name} is undefined on the held-out rows (one class labelled)"
            out.append((GateCheck(name, None, theirs, limit, False), reason))
            continue
        if theirs is None:
            against = "no champion" if champion is None else "the champion has none"
            limit = f"defined ({against} to compare with)"
            out.append((GateCheck(name, mine, None, limit, True), None))
            continue
        if higher_is_better:
            floor = theirs - tolerance
            passed = mine >= floor
            limit = f"≥ {floor:.3f} (champion − {tolerance:.3f})"
            reason = (
                f"{name} {mine:.3f} is {theirs - mine:.3f} below the champion's {theirs:.3f} "
                f"(tolerance {tolerance:.3f})"
            )
        else:
            ceiling = theirs + tolerance
            passed = mine <= ceiling
            limit = f"≤ {ceiling:.3f} (champion + {tolerance:.3f})"
            reason = (
                f"{name} {mine:.3f} is {mine - theirs:.3f} above the champion's {theirs:.3f} "
                f"(tolerance {tolerance:.3f})"
            )
        out.append((GateCheck(name, mine, theirs, limit, passed), None if passed else reason))
    return out


def _fairness_checks(
    candidate: Evaluation, champion: Evaluation | None, tolerance: float, metrics: Collection[str]
) -> list[tuple[GateCheck, str | None]]:
    if candidate.fairness is None:
        return []
    baseline = None if champion is None else champion.fairness
    failed = {
        (r.disparity.metric, r.disparity.attributes): r
        for r in fairness_regressions(candidate.fairness, baseline, tolerance, metrics)
    }
    theirs = {} if baseline is None else {(d.metric, d.attributes): d for d in baseline.disparities}
    out = []
    for d in candidate.fairness.disparities:
        if d.value is None:
            continue
        key = (d.metric, d.attributes)
        other = theirs.get(key)
        op = "≤" if d.upper_bound else "≥"
        limit = f"{op} {d.threshold:g}"
        if d.metric not in metrics:
            limit = "reported, not gated (moves with the base rate)"
        elif baseline is not None:
            limit += f", or within {tolerance:g} of a champion that breaches too"
        regression = failed.get(key)
        check = GateCheck(
            f"{d.metric} ({d.column})",
            d.value,
            None if other is None else other.value,
            limit,
            regression is None,
        )
        out.append((check, None if regression is None else regression.describe()))
    return out


def gate_markdown(
    dataset: str,
    candidate_label: str,
    champion_label: str | None,
    result: GateResult,
    candidate: Evaluation,
    champion: Evaluation | None,
) -> str:
    """The gate's Prefect artifact: the verdict and why, then every check."""
    against = f"champion {_cell(champion_label)}" if champion_label else "no champion"
    verdict = "PASSED: candidate becomes the challenger" if result.passed else "REJECTED"
    rows = f"- held-out rows: {candidate.rows:,}, labelled: {candidate.labelled:,}"
    if champion is not None:
        rows += f" (champion scored {champion.rows:,})"
    lines = [
        f"# Retraining gate: {_cell(dataset)} candidate {_cell(candidate_label)} vs {against}",
        "",
        f"**Verdict: {verdict}**",
        "",
        *(f"- {_cell(reason)}" for reason in result.reasons),
        rows,
        "",
        *_table(
            ("metric", "candidate", "champion", "limit", "ok"),
            [
                (
                    c.name,
                    _number(c.candidate),
                    _number(c.champion),
                    c.limit,
                    "yes" if c.passed else "**no**",
                )
                for c in result.checks
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def gate_metric_rows(
    dataset: str, ds: date | str, model_version: str, evaluation: Evaluation, role: str
) -> list[dict[str, Any]]:
    """The evaluation as rows of the long `lake/metrics` table (`METRIC_KEYS`): `gate:<metric>`
    for each defined quality metric plus `gate:labelled_rows`, with `column` = `role`
    ("candidate" or "champion"). No threshold: the gate's verdict is in `GateResult`."""
    day = ds.isoformat() if isinstance(ds, date) else str(ds)
    values = {"labelled_rows": float(evaluation.labelled)} | {
        m: evaluation.quality[m] for m in QUALITY_METRICS if m in evaluation.quality
    }
    return [
        {
            "dataset": dataset,
            "ds": day,
            "model_version": model_version,
            "metric": f"gate:{name}",
            "column": role,
            "group": None,
            "value": float(value),
            "threshold": None,
            "breached": False,
        }
        for name, value in values.items()
    ]
