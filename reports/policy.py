"""The decision policy: from a drift result to ok / warn / retrain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
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


@dataclass(frozen=True)
class RetrainPolicy:
    """When breaches become a retrain: the memory on top of each day's assessment.

    A day *breaches* when its drift assessment says retrain (see `decide`) or, with
    `retrain_on_bias`, a fairness disparity breaches its threshold. The verdict is retrain
    only when at least `breach_days` of the last `window_days` calendar days (today
    included) breached (hysteresis: one noisy day is a warning), no retrain was decided in
    the last `cooldown_days` days (the new model needs time to be judged), and fewer than
    `max_retrains` were decided in the last `budget_days` days. A breach held back by any of
    these is a warning that says which. A retrain trains on the last `train_days` validated
    days up to the deciding day (the window the request names).
    """

    breach_days: int = 2
    window_days: int = 3
    cooldown_days: int = 7
    max_retrains: int = 2
    budget_days: int = 30
    retrain_on_bias: bool = True
    train_days: int = 7

    def __post_init__(self) -> None:
        if self.train_days < 1:
            raise ValueError("need train_days >= 1")
        if not 1 <= self.breach_days <= self.window_days:
            raise ValueError("need 1 <= breach_days <= window_days")
        if self.cooldown_days < 0 or self.max_retrains < 1 or self.budget_days < 1:
            raise ValueError("need cooldown_days >= 0, max_retrains >= 1, budget_days >= 1")

    @property
    def memory_days(self) -> int:
        """How many days of history a decision looks at."""
        return max(self.window_days, self.cooldown_days, self.budget_days)


@dataclass(frozen=True)
class DayAssessment:
    """What one monitored day found before the policy's memory (the drift verdict of that
    day alone, the fairness breaches), and what the policy decided (`verdict`, `reasons`)."""

    ds: str
    drift: Verdict
    bias_breaches: tuple[str, ...] = ()
    verdict: Verdict | None = None
    reasons: tuple[str, ...] = ()

    def breached(self, policy: RetrainPolicy) -> bool:
        return self.drift is Verdict.RETRAIN or bool(policy.retrain_on_bias and self.bias_breaches)


def decide_with_memory(
    today: DayAssessment, history: Sequence[DayAssessment], policy: RetrainPolicy
) -> DayAssessment:
    """`today` with the policy's verdict and reasons, given the decided days before it (any
    order; days outside the policy's memory are ignored)."""
    day = date.fromisoformat(today.ds)

    def age(other: DayAssessment) -> int:
        return (day - date.fromisoformat(other.ds)).days

    earlier = [h for h in history if 0 < age(h) < policy.memory_days]
    if not today.breached(policy):
        if today.drift is Verdict.WARN or today.bias_breaches:
            return replace(today, verdict=Verdict.WARN, reasons=("below the retrain thresholds",))
        return replace(today, verdict=Verdict.OK, reasons=())
    breaches = 1 + sum(h.breached(policy) for h in earlier if age(h) < policy.window_days)
    retrains = sorted(h.ds for h in earlier if h.verdict is Verdict.RETRAIN)
    if breaches < policy.breach_days:
        hold = (
            f"hysteresis: {breaches} of the last {policy.window_days} days breached, "
            f"retrain needs {policy.breach_days}"
        )
    elif retrains and (day - date.fromisoformat(retrains[-1])).days <= policy.cooldown_days:
        until = date.fromisoformat(retrains[-1]) + timedelta(days=policy.cooldown_days)
        hold = f"cooldown: retrain decided on {retrains[-1]}, next after {until}"
    elif (
        sum(age(h) < policy.budget_days for h in earlier if h.ds in retrains) >= policy.max_retrains
    ):
        hold = f"retrain budget spent: {policy.max_retrains} in the last {policy.budget_days} days"
    else:
        return replace(
            today,
            verdict=Verdict.RETRAIN,
            reasons=(f"{breaches} of the last {policy.window_days} days breached",),
        )
    return replace(today, verdict=Verdict.WARN, reasons=(hold,))


def replay(days: Sequence[DayAssessment], policy: RetrainPolicy) -> list[DayAssessment]:
    """Decide every day in date order as the live runs would have under `policy`, each
    decision remembering the replayed ones before it (not the recorded ones)."""
    decided: list[DayAssessment] = []
    for day in sorted(days, key=lambda d: d.ds):
        decided.append(decide_with_memory(day, decided, policy))
    return decided
