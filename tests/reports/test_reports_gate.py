"""The retraining gate on seeded held-out rows: quality against the champion, fairness
breaches the champion does not share, a first model judged alone, no labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reports import METRIC_KEYS, FairnessPolicy
from reports.fairness import (
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    DEMOGRAPHIC_PARITY_RATIO,
    Disparity,
    FairnessResult,
)
from reports.gate import (
    DISPARITY_METRICS,
    NO_LABELS,
    Evaluation,
    GatePolicy,
    evaluate,
    expected_calibration_error,
    fairness_regressions,
    gate_markdown,
    gate_metric_rows,
    judge_candidate,
)

PROTECTED = ("sex", "race")
FAST = FairnessPolicy(n_boot=50)
POLICY = GatePolicy()
TOLERANCE = FAST.regression_tolerance


def holdout(
    n: int = 6_000,
    seed: int = 0,
    *,
    noise: tuple[float, float] = (0.6, 0.6),
    bias: tuple[float, float] = (0.0, 0.0),
    female_base: float = 0.0,
) -> pd.DataFrame:
    """Held-out rows scored by a champion and a candidate: labels from a latent variable,
    each model's score a noisy view of it (`noise` per model), calibrated (the probability
    of a positive label given the noisy view, by the probit approximation). `bias` lowers a model's
    scores for Black rows (not their labels); `female_base` lowers women's latent variable,
    so both models select fewer women for a reason in the data."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Male", "Female"], n, p=[0.6, 0.4]).astype(object)
    race = rng.choice(["White", "Black", "Other"], n, p=[0.7, 0.2, 0.1]).astype(object)
    latent = rng.normal(0, 1, n) - female_base * (sex == "Female")
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * latent))).astype(float)
    frame = pd.DataFrame({"sex": sex, "race": race, "label": label})
    for name, sd, shift in zip(("champion", "candidate"), noise, bias, strict=True):
        z = latent + rng.normal(0, sd, n) - shift * (race == "Black")
        mean, var = z / (1 + sd**2), sd**2 / (1 + sd**2)
        frame[name] = 1 / (1 + np.exp(-2 * mean / np.sqrt(1 + np.pi * var / 2)))
    return frame


def both(frame: pd.DataFrame, protected=PROTECTED) -> tuple[Evaluation, Evaluation]:
    return (
        evaluate(frame, protected, FAST, score_column="candidate"),
        evaluate(frame, protected, FAST, score_column="champion"),
    )


def test_a_better_candidate_passes():
    candidate, champion = both(holdout(noise=(0.8, 0.4)))
    assert candidate.quality["auc"] > champion.quality["auc"] + 0.02
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    assert result.passed and result.reasons == ()
    auc = next(c for c in result.checks if c.name == "AUC")
    assert auc.passed and auc.candidate == candidate.quality["auc"]
    assert auc.champion == champion.quality["auc"]


def test_a_candidate_with_a_lower_auc_fails_on_quality():
    candidate, champion = both(holdout(noise=(0.4, 1.6)))
    drop = champion.quality["auc"] - candidate.quality["auc"]
    assert drop > 0.05
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    assert not result.passed
    assert result.reasons[0] == (
        f"quality: AUC {candidate.quality['auc']:.3f} is {drop:.3f} below the champion's "
        f"{champion.quality['auc']:.3f} (tolerance 0.010)"
    )
    assert all(r.startswith("quality:") for r in result.reasons)
    # A looser policy lets the same candidate through on AUC.
    loose = GatePolicy(max_auc_drop=1.0, max_logloss_rise=1.0, max_calibration_error_rise=1.0)
    assert judge_candidate(candidate, champion, loose, TOLERANCE).passed


def test_a_miscalibrated_candidate_fails_on_log_loss_and_calibration_not_auc():
    frame = holdout(seed=8, noise=(0.6, 0.6))
    frame["candidate"] = np.sqrt(frame["champion"])  # same ranking, scores pushed up
    candidate, champion = both(frame, protected=())
    assert candidate.quality["auc"] == pytest.approx(champion.quality["auc"])
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    failed = [c.name for c in result.checks if not c.passed]
    assert failed == ["log-loss", "calibration error"]
    rise = candidate.quality["calibration_error"] - champion.quality["calibration_error"]
    assert rise > 0.1
    assert result.reasons[1] == (
        f"quality: calibration error {candidate.quality['calibration_error']:.3f} is "
        f"{rise:.3f} above the champion's {champion.quality['calibration_error']:.3f} "
        "(tolerance 0.020)"
    )
    assert candidate.quality["brier"] > champion.quality["brier"]  # reported, not gated


def test_a_candidate_biased_against_a_group_fails_on_fairness():
    frame = holdout(seed=1, bias=(0.0, 1.5))
    candidate, champion = both(frame)
    assert champion.fairness.breaches == ()
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    assert not result.passed
    fairness = [r for r in result.reasons if r.startswith("fairness:")]
    assert fairness
    ratio = candidate.fairness.disparity(DEMOGRAPHIC_PARITY_RATIO, ("race",))
    before = champion.fairness.disparity(DEMOGRAPHIC_PARITY_RATIO, ("race",))
    assert ratio.breached and not before.breached
    assert (
        f"fairness: demographic_parity_ratio of race {ratio.value:.2f} < 0.8, "
        f"champion {before.value:.2f} on the same rows (tolerance 0.05)"
    ) in fairness
    assert not any(" of sex 0" in r or " of sex 1" in r for r in fairness)  # sex alone: fair
    failed = {c.name for c in result.checks if not c.passed}
    assert "demographic_parity_ratio (race)" in failed
    assert "demographic_parity_ratio (sex)" not in failed


def test_a_breach_shared_with_the_champion_at_the_same_level_passes():
    frame = holdout(seed=2, female_base=1.0)
    candidate, champion = both(frame)
    ratio = candidate.fairness.disparity(DEMOGRAPHIC_PARITY_RATIO, ("sex",))
    before = champion.fairness.disparity(DEMOGRAPHIC_PARITY_RATIO, ("sex",))
    assert ratio.breached and before.breached
    assert abs(ratio.value - before.value) < TOLERANCE
    assert judge_candidate(candidate, champion, POLICY, TOLERANCE).passed
    # The same breach without a champion fails: nothing excuses it.
    alone = judge_candidate(candidate, None, POLICY, TOLERANCE)
    assert not alone.passed
    assert any(
        r.startswith("fairness: demographic_parity_ratio of sex") and "no champion" in r
        for r in alone.reasons
    )


def test_a_shared_breach_that_got_worse_fails():
    frame = holdout(seed=3, female_base=1.0)
    frame["candidate"] = np.where(
        frame["sex"] == "Female", frame["candidate"] * 0.6, frame["candidate"]
    )
    candidate, champion = both(frame)
    ratio = candidate.fairness.disparity(DEMOGRAPHIC_PARITY_RATIO, ("sex",))
    before = champion.fairness.disparity(DEMOGRAPHIC_PARITY_RATIO, ("sex",))
    assert before.breached and before.value - ratio.value > TOLERANCE
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    assert (
        f"fairness: demographic_parity_ratio of sex {ratio.value:.2f} < 0.8, "
        f"champion {before.value:.2f} on the same rows (tolerance 0.05)"
    ) in result.reasons


def disparities(**values: float | None) -> FairnessResult:
    """A result with the given disparities of grouping `race` (`ratio`, `difference`)."""
    specs = {
        "ratio": (DEMOGRAPHIC_PARITY_RATIO, 0.8),
        "difference": (DEMOGRAPHIC_PARITY_DIFFERENCE, 0.1),
    }
    found = []
    for key, value in values.items():
        metric, threshold = specs[key]
        breached = value is not None and (
            value < threshold if key == "ratio" else value > threshold
        )
        found.append(Disparity(metric, ("race",), value, None, None, threshold, breached, 3))
    return FairnessResult((), tuple(found), False, 1_000, FAST)


@pytest.mark.parametrize(
    ("candidate", "champion", "counts"),
    [
        ({"ratio": 0.78}, {"ratio": 0.81}, True),  # a breach the champion does not share
        ({"ratio": 0.58}, {"ratio": 0.60}, False),  # shared, within the tolerance
        ({"ratio": 0.60}, {"ratio": 0.58}, False),  # shared, and better
        ({"ratio": 0.50}, {"ratio": 0.60}, True),  # shared, but 0.10 worse
        ({"difference": 0.18}, {"difference": 0.15}, False),  # larger is worse: 0.03
        ({"difference": 0.25}, {"difference": 0.15}, True),
        ({"difference": 0.25}, {"difference": None}, True),  # no champion value
        ({"difference": 0.25}, {}, True),  # the champion lacks the disparity
        ({"ratio": 0.85}, {"ratio": 0.50}, False),  # no breach at all
    ],
)
def test_fairness_regressions_rule(candidate, champion, counts):
    found = fairness_regressions(
        disparities(**candidate), disparities(**champion), 0.05, DISPARITY_METRICS
    )
    assert bool(found) is counts
    if found and champion.get(next(iter(candidate))) is not None:
        assert found[0].describe().endswith("on the same rows (tolerance 0.05)")


def test_the_parity_difference_is_reported_but_not_gated_by_default():
    """A candidate fitted to a richer population selects more in every group: the
    difference widens with the base rate while the ratio holds."""
    candidate = disparities(ratio=0.62, difference=0.25)
    champion = disparities(ratio=0.60, difference=0.15)
    assert fairness_regressions(candidate, champion, 0.05) == ()
    assert fairness_regressions(candidate, champion, 0.05, DISPARITY_METRICS)
    with pytest.raises(ValueError, match="unknown"):
        GatePolicy(fairness_metrics=("parity",))


def test_fairness_regressions_without_a_champion_count_every_breach():
    found = fairness_regressions(disparities(ratio=0.7, difference=0.05), None, 0.05)
    assert [r.describe() for r in found] == [
        "demographic_parity_ratio of race 0.70 < 0.8, no champion to compare with"
    ]
    assert fairness_regressions(None, None, 0.05) == ()
    missing = fairness_regressions(
        disparities(difference=0.3), disparities(), 0.05, DISPARITY_METRICS
    )
    assert missing[0].describe() == (
        "demographic_parity_difference of race 0.30 > 0.1, the champion has no value on the "
        "same rows"
    )


def test_no_labels_fails_on_quality():
    frame = holdout(seed=4)
    frame["label"] = np.nan
    candidate, champion = both(frame)
    assert candidate.labelled == 0 and candidate.quality == {}
    assert candidate.fairness is not None and not candidate.fairness.labels_present
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    assert not result.passed
    assert result.reasons == (f"quality: {NO_LABELS}",)
    assert result.checks[0].name == "labelled rows" and not result.checks[0].passed


def test_a_first_model_is_judged_on_its_own_numbers():
    candidate = evaluate(holdout(seed=5), (), FAST, score_column="candidate")
    assert candidate.fairness is None
    result = judge_candidate(candidate, None, POLICY, TOLERANCE)
    assert result.passed
    assert [c.name for c in result.checks] == ["AUC", "log-loss", "calibration error"]
    assert all(c.champion is None and "no champion" in c.limit for c in result.checks)


def test_one_labelled_class_leaves_auc_undefined_and_fails():
    frame = holdout(seed=6, n=2_000)
    frame["label"] = 0.0
    candidate = evaluate(frame, (), FAST, score_column="candidate")
    assert "auc" not in candidate.quality and "logloss" in candidate.quality
    result = judge_candidate(candidate, None, POLICY, TOLERANCE)
    assert result.reasons == (
        "quality: AUC is undefined on the held-out rows (one class labelled)",
    )


def test_quality_numbers_are_those_of_scikit_learn():
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    frame = holdout(seed=7, n=3_000)
    frame.loc[frame.index[:500], "label"] = np.nan
    frame.loc[frame.index[-10:], "candidate"] = np.nan  # unscored rows are not counted
    ev = evaluate(frame, (), FAST, score_column="candidate")
    rows = frame.dropna(subset=["candidate"])
    known = rows.dropna(subset=["label"])
    assert (ev.rows, ev.labelled) == (len(rows), len(known))
    y, p = known["label"].to_numpy(), known["candidate"].to_numpy()
    assert ev.quality["auc"] == pytest.approx(roc_auc_score(y, p))
    assert ev.quality["logloss"] == pytest.approx(log_loss(y, p))
    assert ev.quality["brier"] == pytest.approx(brier_score_loss(y, p))


def test_expected_calibration_error():
    # Perfectly calibrated bins: 0.0; every score 0.9 on negatives: 0.9.
    scores = np.repeat([0.05, 0.55], 100)
    labels = np.concatenate([np.r_[np.ones(5), np.zeros(95)], np.r_[np.ones(55), np.zeros(45)]])
    assert expected_calibration_error(labels, scores) == pytest.approx(0.0)
    assert expected_calibration_error(np.zeros(10), np.full(10, 0.9)) == pytest.approx(0.9)
    # Two bins off by 0.1 and 0.3, holding 3/4 and 1/4 of the rows.
    scores = np.r_[np.full(300, 0.25), np.full(100, 1.0)]
    labels = np.r_[np.ones(105), np.zeros(195), np.ones(70), np.zeros(30)]
    assert expected_calibration_error(labels, scores) == pytest.approx(0.75 * 0.1 + 0.25 * 0.3)


def test_policy_rejects_negative_tolerances():
    with pytest.raises(ValueError, match="max_auc_drop"):
        GatePolicy(max_auc_drop=-0.01)
    with pytest.raises(ValueError, match="max_logloss_rise"):
        GatePolicy(max_logloss_rise=float("nan"))


def test_markdown_json_and_metric_rows():
    frame = holdout(seed=1, bias=(0.0, 1.5))
    candidate, champion = both(frame)
    result = judge_candidate(candidate, champion, POLICY, TOLERANCE)
    text = gate_markdown("adult|<x>", "v7", "v6", result, candidate, champion)
    assert "**Verdict: REJECTED**" in text
    assert "| metric | candidate | champion | limit | ok |" in text
    assert "adult\\|&lt;x>" in text
    assert f"| AUC | {candidate.quality['auc']:.3f} | {champion.quality['auc']:.3f} |" in text
    assert text.count("**no**") == sum(not c.passed for c in result.checks)
    first = gate_markdown("adult", "v1", None, judge_candidate(candidate, None, POLICY, 1.0),
                          candidate, None)  # fmt: skip
    assert "vs no champion" in first

    data = json.loads(json.dumps(result.to_json()))
    assert data["passed"] is False and data["reasons"] == list(result.reasons)
    assert len(data["checks"]) == len(result.checks)
    assert json.loads(json.dumps(candidate.to_json()))["quality"] == candidate.quality

    rows = gate_metric_rows("adult", "2024-03-01", "v7", candidate, "candidate")
    assert all(tuple(r) == METRIC_KEYS for r in rows)
    by_metric = {r["metric"]: r for r in rows}
    assert set(by_metric) == {
        "gate:labelled_rows",
        "gate:auc",
        "gate:logloss",
        "gate:brier",
        "gate:calibration_error",
    }
    assert by_metric["gate:auc"]["value"] == candidate.quality["auc"]
    assert {r["column"] for r in rows} == {"candidate"}
    assert {r["ds"] for r in rows} == {"2024-03-01"}
