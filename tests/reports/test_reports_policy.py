from datetime import date, timedelta

import pytest

from reports import ColumnDrift, DriftPolicy, DriftResult, Verdict, decide
from reports.policy import DayAssessment, RetrainPolicy, replay


def result(*drifted: str, score: bool = False) -> DriftResult:
    features = ("age", "hours", "education", "sex")
    columns = tuple(
        ColumnDrift(name, "wasserstein", 0.41 if name in drifted else 0.02, 0.1, name in drifted)
        for name in features
    ) + (ColumnDrift("score", "ks", 0.001 if score else 0.6, 0.05, score),)
    share = sum(c.drifted for c in columns) / len(columns)
    return DriftResult(columns, share, share >= 0.5, 1000, 1000)


def test_ok_without_drift():
    decision = decide(result(), DriftPolicy())
    assert decision.verdict is Verdict.OK
    assert decision.reasons == ("no column drifted",)
    assert decision.feature_drifted_share == 0.0


def test_warn_below_retrain_share():
    decision = decide(result("age"), DriftPolicy(retrain_share=0.3))
    assert decision.verdict is Verdict.WARN
    assert decision.feature_drifted_share == 0.25
    assert decision.reasons == ("age drifted: wasserstein 0.41 ≥ 0.10",)


def test_retrain_at_retrain_share():
    decision = decide(result("age", "sex"), DriftPolicy(retrain_share=0.5))
    assert decision.verdict is Verdict.RETRAIN
    assert (
        decision.reasons[-1] == "2 of 4 feature columns drifted (share 0.50 ≥ retrain share 0.50)"
    )
    assert decide(result("age", "sex"), DriftPolicy(retrain_share=0.51)).verdict is Verdict.WARN


def test_retrain_share_counts_features_only():
    # 1 of 4 features; with the score it would be 2 of 5 ≥ 0.3.
    policy = DriftPolicy(retrain_share=0.3, retrain_on_score_drift=False)
    assert decide(result("age", score=True), policy).verdict is Verdict.WARN


def test_score_drift_retrains_when_the_policy_says_so():
    decision = decide(result(score=True), DriftPolicy())
    assert decision.verdict is Verdict.RETRAIN
    assert decision.reasons == ("score drifted: ks 1.0e-03 < 0.05", "model score 'score' drifted")
    no_retrain = DriftPolicy(retrain_on_score_drift=False)
    assert decide(result(score=True), no_retrain).verdict is Verdict.WARN


def test_warn_share_tolerates_some_drift():
    decision = decide(result("age"), DriftPolicy(warn_share=0.2, retrain_share=0.5))
    assert decision.verdict is Verdict.OK
    assert decision.reasons[-1] == "drifted share 0.20 is within warn share 0.20"
    assert decide(result("age"), DriftPolicy(warn_share=0.19)).verdict is Verdict.WARN


def test_zero_retrain_share_still_needs_a_drifted_feature():
    assert decide(result(), DriftPolicy(retrain_share=0.0)).verdict is Verdict.OK
    assert decide(result("age"), DriftPolicy(retrain_share=0.0)).verdict is Verdict.RETRAIN


def test_other_score_column_name():
    policy = DriftPolicy()
    assert decide(result("hours"), policy, score_column="hours").verdict is Verdict.RETRAIN
    assert decide(result(score=True), policy, score_column=None).verdict is Verdict.WARN


def test_shares_must_be_fractions():
    with pytest.raises(ValueError, match="retrain_share"):
        DriftPolicy(retrain_share=1.5)
    with pytest.raises(ValueError, match="warn_share"):
        DriftPolicy(warn_share=-0.1)


def test_verdicts_are_strings():
    assert [str(v) for v in Verdict] == ["ok", "warn", "retrain"]


def test_end_to_end_verdicts(no_drift, age_drift):
    assert decide(no_drift, DriftPolicy()).verdict is Verdict.OK
    assert decide(age_drift, DriftPolicy()).verdict is Verdict.WARN
    assert decide(age_drift, DriftPolicy(retrain_share=0.25)).verdict is Verdict.RETRAIN


# The memory: hysteresis, cooldown, budget, bias, replay.


def days(*drifts: str, start: str = "2024-03-01", bias: dict[int, str] | None = None):
    first = date.fromisoformat(start)
    return [
        DayAssessment(
            ds=(first + timedelta(days=i)).isoformat(),
            drift=Verdict(drift),
            bias_breaches=((bias or {})[i],) if i in (bias or {}) else (),
        )
        for i, drift in enumerate(drifts)
    ]


def verdicts(decided) -> list[str]:
    return [day.verdict.value for day in decided]


def test_one_breached_day_warns_two_of_three_retrain():
    policy = RetrainPolicy(breach_days=2, window_days=3, cooldown_days=0)
    decided = replay(days("retrain", "ok", "ok", "retrain", "ok", "retrain"), policy)
    assert verdicts(decided) == ["warn", "ok", "ok", "warn", "ok", "retrain"]
    assert decided[0].reasons[0].startswith("hysteresis: 1 of the last 3 days breached")


def test_no_retrain_again_within_the_cooldown():
    policy = RetrainPolicy(breach_days=1, window_days=1, cooldown_days=3, max_retrains=9)
    decided = replay(days(*["retrain"] * 6), policy)
    assert verdicts(decided) == ["retrain", "warn", "warn", "warn", "retrain", "warn"]
    assert decided[1].reasons == ("cooldown: retrain decided on 2024-03-01, next after 2024-03-04",)


def test_the_retrain_budget_caps_retrains_per_period():
    policy = RetrainPolicy(breach_days=1, window_days=1, cooldown_days=0, max_retrains=2)
    decided = replay(days(*["retrain"] * 5), policy)
    assert verdicts(decided) == ["retrain", "retrain", "warn", "warn", "warn"]
    assert "budget spent" in decided[2].reasons[0]


def test_bias_breaches_count_only_when_the_policy_says_so():
    history = days("ok", "ok", "ok", bias={0: "sex: dp ratio", 1: "sex: dp ratio"})
    assert verdicts(replay(history, RetrainPolicy(cooldown_days=0)))[1] == "retrain"
    ignoring = RetrainPolicy(cooldown_days=0, retrain_on_bias=False)
    assert verdicts(replay(history, ignoring)) == ["warn", "warn", "ok"]


def test_replay_is_order_free_and_ignores_what_was_recorded():
    history = days("retrain", "retrain", "retrain", "ok")
    recorded = [DayAssessment(d.ds, d.drift, verdict=Verdict.OK) for d in history]
    policy = RetrainPolicy(cooldown_days=5)
    assert verdicts(replay(recorded[::-1], policy)) == ["warn", "retrain", "warn", "ok"]


def test_an_impossible_policy_is_refused():
    with pytest.raises(ValueError, match="breach_days <= window_days"):
        RetrainPolicy(breach_days=4, window_days=3)
