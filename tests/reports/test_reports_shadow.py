"""Shadow scoring on seeded days: agreement and PSI of two models' scores, realised quality
where labels arrived, fairness regressions, and the promote / retire / wait verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reports import METRIC_KEYS, FairnessPolicy
from reports.fairness import DEMOGRAPHIC_PARITY_RATIO, assess_fairness
from reports.profile import psi
from reports.shadow import (
    ShadowDay,
    ShadowPolicy,
    compare_shadow,
    judge_shadow,
    score_psi,
    shadow_html,
    shadow_markdown,
    shadow_metric_rows,
)

PROTECTED = ("sex", "race")
FAST = FairnessPolicy(n_boot=50)
POLICY = ShadowPolicy()
ROWS = 6_000


def batch(
    seed: int,
    n: int = ROWS,
    *,
    noise: tuple[float, float] = (0.6, 0.6),
    same: bool = False,
    bias: float = 0.0,
    labelled: float = 0.3,
) -> pd.DataFrame:
    """A day scored by both models: calibrated noisy views (`noise` per model) of a latent
    variable that draws the label; `same` gives the challenger the champion's scores, `bias`
    lowers the challenger's scores of Black rows; a `labelled` share of labels arrived."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Male", "Female"], n, p=[0.6, 0.4]).astype(object)
    race = rng.choice(["White", "Black", "Other"], n, p=[0.7, 0.2, 0.1]).astype(object)
    latent = rng.normal(0, 1, n)
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * latent))).astype(float)
    label[rng.random(n) >= labelled] = np.nan
    frame = pd.DataFrame({"sex": sex, "race": race, "label": label})
    for name, sd, shift in zip(("champion", "challenger"), noise, (0.0, bias), strict=True):
        z = latent + rng.normal(0, sd, n) - shift * (race == "Black")
        mean, var = z / (1 + sd**2), sd**2 / (1 + sd**2)
        frame[f"{name}_score"] = 1 / (1 + np.exp(-2 * mean / np.sqrt(1 + np.pi * var / 2)))
    if same:
        frame["challenger_score"] = frame["champion_score"]
    return frame


def day(ds: str, frame: pd.DataFrame, protected=PROTECTED, policy=POLICY) -> ShadowDay:
    return compare_shadow(ds, frame, protected, FAST, policy)


DAYS = ("2024-03-01", "2024-03-02", "2024-03-03")


def test_identical_models_agree_and_are_promoted_after_the_window():
    days = [day(ds, batch(seed=i, same=True)) for i, ds in enumerate(DAYS)]
    first = days[0]
    assert first.rows == ROWS and first.agreement == 1.0
    assert first.mean_abs_score_diff == 0.0 and first.score_psi == pytest.approx(0.0, abs=1e-12)
    assert first.champion_quality == first.challenger_quality and "auc" in first.champion_quality
    assert first.fairness_regressions == ()
    assert first.bias_deltas and all(a == b for _, _, a, b in first.bias_deltas)
    assert {c for _, c, _, _ in first.bias_deltas} == {"sex", "race", "sex × race"}

    verdict = judge_shadow(days, POLICY)
    assert verdict.decision == "promote" and verdict.days == 3
    labelled = sum(d.labelled for d in days)
    auc = sum(d.champion_quality["auc"] * d.labelled for d in days) / labelled
    assert verdict.reasons[0] == (
        f"3 shadow days, 18,000 rows; agreement 1.00; realised AUC {auc:.3f} vs champion "
        f"{auc:.3f} on {labelled:,} labelled rows over 3 days"
    )
    assert verdict.reasons[1] == "no fairness regression against the champion on any day"


def test_wait_until_the_window_is_complete():
    days = [day(ds, batch(seed=i, same=True, n=1_000)) for i, ds in enumerate(DAYS)]
    assert judge_shadow([], POLICY) == judge_shadow([], POLICY)
    assert judge_shadow([], POLICY).reasons == ("shadow day 0 of 3",)
    verdict = judge_shadow(days[:1], POLICY)
    assert (verdict.decision, verdict.reasons, verdict.days) == ("wait", ("shadow day 1 of 3",), 1)
    # A re-run day counts once.
    rerun = judge_shadow([days[0], days[1], days[1]], POLICY)
    assert (rerun.decision, rerun.reasons) == ("wait", ("shadow day 2 of 3",))
    assert judge_shadow(days, POLICY).decision == "promote"
    assert judge_shadow(days, ShadowPolicy(shadow_days=4)).decision == "wait"


def test_a_challenger_with_a_fairness_regression_is_retired():
    fair = day(DAYS[0], batch(seed=10))
    biased_frame = batch(seed=11, bias=1.5)
    biased = day(DAYS[1], biased_frame)
    assert fair.fairness_regressions == ()
    champion = assess_fairness(biased_frame, PROTECTED, FAST, "champion_score")
    challenger = assess_fairness(biased_frame, PROTECTED, FAST, "challenger_score")
    ratio = challenger.disparity(DEMOGRAPHIC_PARITY_RATIO, ("race",))
    before = champion.disparity(DEMOGRAPHIC_PARITY_RATIO, ("race",))
    assert ratio.breached and not before.breached
    line = (
        f"demographic_parity_ratio of race {ratio.value:.2f} < 0.8, champion "
        f"{before.value:.2f} on the same rows (tolerance 0.05)"
    )
    assert line in biased.fairness_regressions
    assert (DEMOGRAPHIC_PARITY_RATIO, "race", before.value, ratio.value) in biased.bias_deltas

    verdict = judge_shadow([fair, biased, day(DAYS[2], batch(seed=12))], POLICY)
    assert verdict.decision == "retire"
    assert f"fairness: {DAYS[1]}: {line}" in verdict.reasons
    # Seen before the window ends, it is listed while waiting.
    early = judge_shadow([fair, biased], POLICY)
    assert early.decision == "wait" and f"{DAYS[1]}: {line}" in early.reasons


def test_a_worse_realised_auc_is_retired_with_the_numbers():
    days = [day(ds, batch(seed=20 + i, noise=(0.4, 1.5))) for i, ds in enumerate(DAYS)]
    labelled = sum(d.labelled for d in days)
    champion = sum(d.champion_quality["auc"] * d.labelled for d in days) / labelled
    challenger = sum(d.challenger_quality["auc"] * d.labelled for d in days) / labelled
    assert champion - challenger > 0.05
    assert all(d.agreement < 1.0 and d.mean_abs_score_diff > 0.01 for d in days)
    verdict = judge_shadow(days, POLICY)
    assert verdict.decision == "retire"
    assert verdict.reasons == (
        f"quality: realised AUC {challenger:.3f} vs champion {champion:.3f} on {labelled:,} "
        f"labelled rows over 3 days: {champion - challenger:.3f} below (tolerance 0.010)",
    )
    assert judge_shadow(days, ShadowPolicy(max_auc_drop=0.5)).decision == "promote"


def test_days_with_too_few_labels_are_not_judged_on_quality():
    sparse = day(DAYS[0], batch(seed=30, n=2_000, labelled=0.05))
    assert 0 < sparse.labelled < POLICY.min_labelled_rows
    assert sparse.champion_quality == {} and sparse.challenger_quality == {}
    bad = [day(ds, batch(seed=31 + i, noise=(0.4, 1.5))) for i, ds in enumerate(DAYS[1:])]
    verdict = judge_shadow([sparse, *bad], POLICY)
    assert verdict.decision == "retire"
    assert "over 2 days" in verdict.reasons[0]
    assert f"on {sum(d.labelled for d in bad):,} labelled rows" in verdict.reasons[0]


def test_without_labels_the_challenger_is_promoted_on_fairness():
    days = [day(ds, batch(seed=40 + i, labelled=0.0)) for i, ds in enumerate(DAYS)]
    assert all(d.labelled == 0 and d.challenger_quality == {} for d in days)
    verdict = judge_shadow(days, POLICY)
    assert verdict.decision == "promote"
    assert verdict.reasons[1] == "no labels arrived in the window: judged on fairness only"
    assert verdict.reasons[2] == "no fairness regression against the champion on any day"
    few = [day(ds, batch(seed=50 + i, n=500, labelled=0.1)) for i, ds in enumerate(DAYS)]
    reasons = judge_shadow(few, POLICY).reasons
    arrived = sum(d.labelled for d in few)
    assert reasons[1] == (
        f"labels on {arrived:,} rows, never 200 of both classes on one day: judged on fairness only"
    )


def test_score_psi_and_agreement_of_a_shifted_challenger():
    frame = batch(seed=60, same=True, n=4_000)
    frame["challenger_score"] = np.clip(frame["champion_score"] + 0.15, 0, 1)
    shifted = day(DAYS[0], frame, protected=())
    champion, challenger = frame["champion_score"], frame["challenger_score"]
    decided = (champion >= 0.5) == (challenger >= 0.5)
    assert shifted.agreement == pytest.approx(decided.mean())
    assert shifted.agreement < 0.95
    assert shifted.mean_abs_score_diff == pytest.approx((challenger - champion).abs().mean())
    assert shifted.challenger_mean_score - shifted.champion_mean_score == pytest.approx(
        (challenger - champion).mean()
    )
    # Deciles of the champion: 10% of its rows per bin; the challenger's shares differ.
    edges = np.quantile(champion, np.linspace(0, 1, 11))[1:-1]
    counts = np.histogram(challenger, bins=[-np.inf, *edges, np.inf])[0]
    assert shifted.score_psi == pytest.approx(float(psi(np.full(10, 400), counts)), rel=1e-3)
    assert shifted.score_psi > 0.2
    assert shifted.bias_deltas == () and shifted.fairness_regressions == ()
    assert score_psi(champion.to_numpy(), champion.to_numpy()) == 0.0


def test_rows_missing_a_score_are_left_out():
    frame = batch(seed=70, same=True, n=1_000)
    frame.loc[frame.index[:100], "challenger_score"] = np.nan
    assert day(DAYS[0], frame).rows == 900


def test_shadow_day_json_round_trip():
    original = day(DAYS[0], batch(seed=80, bias=1.5))
    assert original.fairness_regressions and original.champion_quality
    data = json.loads(json.dumps(original.to_json()))
    assert ShadowDay.from_json(data) == original


def test_policy_is_validated():
    with pytest.raises(ValueError, match="shadow_days"):
        ShadowPolicy(shadow_days=0)
    with pytest.raises(ValueError, match="max_auc_drop"):
        ShadowPolicy(max_auc_drop=-0.1)
    with pytest.raises(ValueError, match="threshold"):
        ShadowPolicy(threshold=1.5)


def test_metric_rows_markdown_and_html():
    frame = batch(seed=90, bias=1.5)
    shadow = day(DAYS[0], frame)
    verdict = judge_shadow([shadow], POLICY)
    rows = shadow_metric_rows("adult", DAYS[0], "v8", shadow)
    assert all(tuple(r) == METRIC_KEYS for r in rows)
    assert {r["model_version"] for r in rows} == {"v8"}
    single = {r["metric"]: r["value"] for r in rows if r["column"] is None}
    assert single["shadow:agreement"] == shadow.agreement
    assert single["shadow:score_psi"] == shadow.score_psi
    assert single["shadow:mean_abs_score_diff"] == shadow.mean_abs_score_diff
    auc = {r["column"]: r["value"] for r in rows if r["metric"] == "shadow:auc"}
    assert auc == {
        "champion": shadow.champion_quality["auc"],
        "challenger": shadow.challenger_quality["auc"],
    }
    deltas = {(r["column"], r["group"]): r["value"] for r in rows if "fairness" in r["metric"]}
    before, after = next(
        (a, b) for m, c, a, b in shadow.bias_deltas if (m, c) == (DEMOGRAPHIC_PARITY_RATIO, "race")
    )
    assert deltas[("race", DEMOGRAPHIC_PARITY_RATIO)] == pytest.approx(after - before)
    assert deltas[("race", DEMOGRAPHIC_PARITY_RATIO)] < -0.1

    text = shadow_markdown("adult|<x>", DAYS[0], "v7", "v8", shadow, verdict)
    assert "**Decision: WAIT** after 1 shadow day" in text
    assert "adult\\|&lt;x>" in text and "**fairness regression**" in text
    assert f"| auc | {shadow.champion_quality['auc']:.3f} |" in text

    hostile = "</script><script>alert(1)</script>"
    html = shadow_html(hostile, DAYS[0], "v7", "v8", shadow, verdict)
    assert hostile not in html and "&lt;/script&gt;" in html
    assert "<script" not in html and html.startswith('<section class="tw-shadow">')
    assert "Fairness regressions" in html and "demographic_parity_ratio" in html
