"""The decision policy: from a drift result to ok / warn / retrain."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reports.result import ColumnDrift, DriftResult


class Verdict(StrEnum):
    """What the pipeline should do about the drift it saw."""

    OK = "ok"
    WARN = "warn"
    RETRAIN = "retrain"


@dataclass(frozen=True)
class DriftPolicy:
    """Thresholds for the verdict.

    - warn when the share of drifted columns (features and score) exceeds `warn_share`
      (the default 0.0 warns on any drifted column);
    - retrain when the share of drifted feature columns reaches `retrain_share`, or when the
      score drifted and `retrain_on_score_drift`.
    """

    warn_share: float = 0.0
    retrain_share: float = 0.3
    retrain_on_score_drift: bool = True

    def __post_init__(self) -> None:
        for name in ("warn_share", "retrain_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {share}")


@dataclass(frozen=True)
class Decision:
    """A verdict with the human-readable reasons for it.

    `feature_drifted_share` is the share of drifted feature columns (score excluded) that was
    compared with `policy.retrain_share`.
    """

    verdict: Verdict
    reasons: tuple[str, ...]
    feature_drifted_share: float
    policy: DriftPolicy


def decide(
    result: DriftResult, policy: DriftPolicy, score_column: str | None = "score"
) -> Decision:
    """The verdict `policy` gives for `result`; `score_column` names the model-score column."""
    features = [c for c in result.columns if c.column != score_column]
    drifted_features = [c for c in features if c.drifted]
    score_drift = next((c for c in result.columns if c.column == score_column and c.drifted), None)
    feature_share = len(drifted_features) / len(features) if features else 0.0
    drifted = result.drifted
    share = len(drifted) / len(result.columns) if result.columns else 0.0

    reasons = [describe(c) for c in drifted]
    retrain = False
    if drifted_features and feature_share >= policy.retrain_share:
        retrain = True
        reasons.append(
            f"{len(drifted_features)} of {len(features)} feature columns drifted "
            f"(share {feature_share:.2f} ≥ retrain share {policy.retrain_share:.2f})"
        )
    if score_drift is not None and policy.retrain_on_score_drift:
        retrain = True
        reasons.append(f"model score {score_column!r} drifted")

    if retrain:
        verdict = Verdict.RETRAIN
    elif drifted and share > policy.warn_share:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.OK
        if not drifted:
            reasons.append("no column drifted")
        else:
            reasons.append(
                f"drifted share {share:.2f} is within warn share {policy.warn_share:.2f}"
            )
    return Decision(
        verdict=verdict,
        reasons=tuple(reasons),
        feature_drifted_share=feature_share,
        policy=policy,
    )


def describe(drift: ColumnDrift) -> str:
    """One line saying how a column's drift score compares with its threshold."""
    state = "drifted" if drift.drifted else "stable"
    op = "<" if drift.value < drift.threshold else "≥"
    return (
        f"{drift.column} {state}: {drift.method} {format_score(drift.value)} {op} "
        f"{format_score(drift.threshold)}"
    )


def format_score(value: float) -> str:
    """A drift score or threshold, short but keeping tiny p-values readable."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.1e}"
