"""Bias and fairness: planted bias flagged on its group only, suppression, labels absent or
partial, seeded bootstrap intervals, metrics rows and escaped HTML."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from reports import (
    METRIC_KEYS,
    FairnessPolicy,
    FairnessResult,
    assess_fairness,
    fairness_html,
    fairness_metric_rows,
)
from reports.fairness import (
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    DEMOGRAPHIC_PARITY_RATIO,
    EQUALIZED_ODDS_DIFFERENCE,
    MISSING_GROUP,
)

RACES = ("White", "Black", "Asian-Pac-Islander", "Other")
RACE_P = (0.78, 0.12, 0.06, 0.04)
BANDS = ("<=25", "26-35", "36-45", ">45")
PROTECTED = ("sex", "race", "age_band")
FAST = FairnessPolicy(n_boot=50)
HOSTILE = "</script><script>alert(1)</script>"


def make_frame(n: int = 20_000, seed: int = 0, bias: float = 0.0) -> pd.DataFrame:
    """A scored day: labels from a latent variable, scores a noisy view of it.

    `bias` lowers the scores (not the labels) of women who are Black, so their selection
    rate and TPR drop while their outcomes do not.
    """
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Male", "Female"], n, p=[0.6, 0.4]).astype(object)
    race = rng.choice(RACES, n, p=RACE_P).astype(object)
    band = rng.choice(BANDS, n).astype(object)
    latent = rng.normal(0, 1, n)
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * latent))).astype(float)
    z = latent + rng.normal(0, 0.5, n) - bias * ((sex == "Female") & (race == "Black"))
    score = 1 / (1 + np.exp(-z))
    return pd.DataFrame(
        {"sex": sex, "race": race, "age_band": band, "score": score, "label": label}
    )


@pytest.fixture(scope="module")
def planted_frame() -> pd.DataFrame:
    return make_frame(bias=1.5)


@pytest.fixture(scope="module")
def planted(planted_frame: pd.DataFrame) -> FairnessResult:
    return assess_fairness(planted_frame, PROTECTED, FAST)


def test_planted_bias_breaches_on_its_group_and_intersection(planted):
    intersection = ("sex", "race")
    for metric in (DEMOGRAPHIC_PARITY_DIFFERENCE, DEMOGRAPHIC_PARITY_RATIO):
        d = planted.disparity(metric, intersection)
        assert d.breached
        assert d.low_group == ("Female", "Black")
    eo = planted.disparity(EQUALIZED_ODDS_DIFFERENCE, intersection)
    assert eo.breached and eo.basis == "tpr" and eo.low_group == ("Female", "Black")

    female_black = planted.group(intersection, ("Female", "Black"))
    others = [g for g in planted.groups if g.attributes == intersection and g is not female_black]
    assert all(female_black.selection_rate < g.selection_rate - 0.3 for g in others)

    # Groupings without race do not breach; those with race name Black as the low group.
    for d in planted.disparities:
        if "race" not in d.attributes:
            assert not d.breached, d
        elif d.breached:
            assert d.low_group[d.attributes.index("race")] == "Black", d
    assert {d.attributes for d in planted.breaches} <= {
        ("race",),
        ("sex", "race"),
        ("race", "age_band"),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_planted_bias_nothing_breaches(seed):
    result = assess_fairness(make_frame(seed=seed), ("sex", "race"), FAST)
    assert result.labels_present
    assert len(result.disparities) == 9  # 3 groupings × (DP difference, DP ratio, EO)
    assert result.breaches == ()


def test_many_small_equal_groups_do_not_breach_on_the_interval():
    """30 groups of 120 rows, one selection probability: the range of their rates is noise."""
    estimate_breaches = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame(
            {"g": np.repeat([f"g{i:02d}" for i in range(30)], 120), "score": rng.random(3_600)}
        )
        frame["score"] = np.where(frame["score"] < 0.25, 0.9, 0.1)
        result = assess_fairness(frame, ("g",), FairnessPolicy(n_boot=200, seed=seed))
        d = result.disparity(DEMOGRAPHIC_PARITY_DIFFERENCE, ("g",))
        estimate_breaches += d.value > 0.1
        assert not d.breached, d
    assert estimate_breaches >= 4


def test_values_match_fairlearn_on_the_raw_rows(planted, planted_frame):
    frame = planted_frame
    selected = (frame["score"] >= 0.5).astype(int)
    sensitive = frame[["sex", "race"]]
    dp_difference = planted.disparity(DEMOGRAPHIC_PARITY_DIFFERENCE, ("sex", "race"))
    dp_ratio = planted.disparity(DEMOGRAPHIC_PARITY_RATIO, ("sex", "race"))
    eo = planted.disparity(EQUALIZED_ODDS_DIFFERENCE, ("sex", "race"))
    assert dp_difference.excluded == dp_ratio.excluded == eo.excluded == ()
    expected = demographic_parity_difference(selected, selected, sensitive_features=sensitive)
    assert dp_difference.value == pytest.approx(expected, abs=1e-12)
    expected = demographic_parity_ratio(selected, selected, sensitive_features=sensitive)
    assert dp_ratio.value == pytest.approx(expected, abs=1e-12)
    expected = equalized_odds_difference(
        frame["label"].astype(int), selected, sensitive_features=sensitive
    )
    assert eo.value == pytest.approx(expected, abs=1e-12)

    g = planted.group(("sex", "race"), ("Female", "Black"))
    rows = (frame["sex"] == "Female") & (frame["race"] == "Black")
    assert g.size == rows.sum()
    assert g.selection_rate == pytest.approx(selected[rows].mean(), abs=1e-12)
    assert g.tpr == pytest.approx(recall_score(frame["label"][rows], selected[rows]), abs=1e-12)
    negatives = rows & (frame["label"] == 0)
    assert g.fpr == pytest.approx(selected[negatives].mean(), abs=1e-12)
    for sex in ("Female", "Male"):
        g, rows = planted.group(("sex",), (sex,)), frame["sex"] == sex
        expected = precision_score(frame["label"][rows], selected[rows])
        assert g.precision == pytest.approx(expected, abs=1e-12)
    assert g.auc == pytest.approx(roc_auc_score(frame["label"][rows], frame["score"][rows]))


def test_auc_of_every_group_is_scikit_learns_on_its_rows_tied_scores_included():
    rng = np.random.default_rng(3)
    n = 5_000
    frame = pd.DataFrame({"g": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
                          "label": rng.integers(0, 2, n).astype(float)})  # fmt: skip
    frame["score"] = np.round(np.clip(0.3 * frame["label"] + rng.random(n), 0, 1), 1)  # ties
    frame.loc[frame.index[::7], "label"] = np.nan  # unlabelled rows do not count
    result = assess_fairness(frame, ("g",), FairnessPolicy(n_boot=0))
    for name in ("a", "b", "c"):
        rows = (frame["g"] == name) & frame["label"].notna()
        expected = roc_auc_score(frame["label"][rows], frame["score"][rows])
        assert result.group(("g",), (name,)).auc == pytest.approx(expected, abs=1e-12)


def test_small_groups_are_suppressed_marked_and_excluded():
    frame = make_frame(seed=4)
    small = frame.index[:60]
    frame.loc[small, "race"] = "Amer-Indian-Eskimo"
    frame.loc[small, "score"] = 0.0  # nobody selected: would breach if it were compared
    # "Other" keeps its size but has under 100 labelled positives: its TPR is withheld.
    other = frame["race"] == "Other"
    positives = frame.index[other & (frame["label"] == 1)]
    frame.loc[positives[50:], "label"] = 0.0

    result = assess_fairness(frame, ("sex", "race"), FAST)

    g = result.group(("race",), ("Amer-Indian-Eskimo",))
    assert g.suppressed and g.size == 60
    assert g.selection_rate is None and g.tpr is None and g.selection_rate_ci is None
    for sex in ("Female", "Male"):
        assert result.group(("sex", "race"), (sex, "Amer-Indian-Eskimo")).suppressed
    for metric in (DEMOGRAPHIC_PARITY_DIFFERENCE, DEMOGRAPHIC_PARITY_RATIO):
        d = result.disparity(metric, ("race",))
        assert d.excluded == (("Amer-Indian-Eskimo",),)
        assert d.compared == 4
        assert not d.breached

    o = result.group(("race",), ("Other",))
    assert not o.suppressed and o.positives == 50
    assert o.tpr is None and o.auc is None and o.fpr is not None
    assert o.suppressed_metrics == ("tpr", "auc")
    eo = result.disparity(EQUALIZED_ODDS_DIFFERENCE, ("race",))
    assert ("Other",) in eo.excluded and ("Amer-Indian-Eskimo",) in eo.excluded

    rows = fairness_metric_rows("adult", "2024-01-06", "v3", result)
    suppressed = [r for r in rows if r["metric"] == "fairness:suppressed"]
    assert {
        "column": "race",
        "group": "Amer-Indian-Eskimo",
        "value": 60.0,
    }.items() <= next(r for r in suppressed if r["column"] == "race").items()
    assert len(suppressed) == 1 + 2  # race alone, and with each sex
    withheld = [r for r in rows if r["metric"] == "fairness:tpr:suppressed"]
    assert any(r["group"] == "Other" and r["value"] == 50.0 for r in withheld)
    html = fairness_html(result)
    assert "suppressed (small group)" in html and "Amer-Indian-Eskimo" in html


def test_labels_absent_gives_size_selection_and_parity_only():
    frame = make_frame(seed=5)
    frame["label"] = np.nan
    result = assess_fairness(frame, ("sex", "race"), FAST)
    without_column = assess_fairness(frame.drop(columns="label"), ("sex", "race"), FAST)

    assert not result.labels_present and result.labelled_rows == 0
    assert result.to_json() == without_column.to_json()
    assert {d.metric for d in result.disparities} == {
        DEMOGRAPHIC_PARITY_DIFFERENCE,
        DEMOGRAPHIC_PARITY_RATIO,
    }
    for g in result.groups:
        assert g.selection_rate is not None and g.selection_rate_ci is not None
        assert (g.tpr, g.fpr, g.precision, g.auc) == (None, None, None, None)
        assert g.suppressed_metrics == ()
    metrics = {r["metric"] for r in fairness_metric_rows("a", "2024-01-06", "v1", result)}
    assert metrics == {
        "fairness:size",
        "fairness:selection_rate",
        "fairness:selection_rate:ci_low",
        "fairness:selection_rate:ci_high",
        "fairness:demographic_parity_difference",
        "fairness:demographic_parity_difference:ci_low",
        "fairness:demographic_parity_difference:ci_high",
        "fairness:demographic_parity_ratio",
        "fairness:demographic_parity_ratio:ci_low",
        "fairness:demographic_parity_ratio:ci_high",
    }
    assert "no labels" in fairness_html(result)


def test_partial_labels_use_the_labelled_rows_only():
    frame = make_frame(seed=6)
    rng = np.random.default_rng(106)  # not 6: that would replay the draw that chose sex
    frame.loc[rng.random(len(frame)) < 0.6, "label"] = np.nan
    result = assess_fairness(frame, ("sex", "race"), FAST)

    assert result.labels_present
    assert result.labelled_rows == frame["label"].notna().sum()
    rows = (frame["sex"] == "Male") & (frame["race"] == "White")
    known = rows & frame["label"].notna()
    g = result.group(("sex", "race"), ("Male", "White"))
    selected = frame["score"] >= 0.5
    assert g.size == rows.sum() and g.labelled == known.sum()
    assert g.selection_rate == pytest.approx(selected[rows].mean(), abs=1e-12)
    assert g.tpr == pytest.approx(recall_score(frame["label"][known], selected[known]), abs=1e-12)
    assert g.auc == pytest.approx(roc_auc_score(frame["label"][known], frame["score"][known]))


def test_bootstrap_is_seeded():
    frame = make_frame(seed=7, bias=1.0)
    first = assess_fairness(frame, ("race",), FAST)
    again = assess_fairness(frame, ("race",), FAST)
    other = assess_fairness(frame, ("race",), FairnessPolicy(n_boot=50, seed=1))
    assert first.to_json() == again.to_json()
    assert [d.value for d in first.disparities] == [d.value for d in other.disparities]
    assert [d.ci_low for d in first.disparities] != [d.ci_low for d in other.disparities]


def test_intervals_contain_the_estimates(planted):
    for d in planted.disparities:
        assert d.ci_low <= d.value <= d.ci_high, d
    for g in planted.groups:
        for name in ("selection_rate", "tpr", "fpr", "precision"):
            value, ci = getattr(g, name), getattr(g, f"{name}_ci")
            assert (value is None) == (ci is None), (g, name)
            if ci is not None:
                assert ci[0] <= value <= ci[1], (g, name)


def test_bootstrap_width_matches_the_binomial_standard_error():
    frame = make_frame(seed=8)
    result = assess_fairness(frame, ("sex",), FairnessPolicy(n_boot=400))
    for g in result.groups:
        p, n = g.selection_rate, g.size
        width = g.selection_rate_ci[1] - g.selection_rate_ci[0]
        assert width == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / n), rel=0.2)


def test_without_bootstrap_the_estimate_decides(planted_frame):
    result = assess_fairness(
        planted_frame, ("sex",), FairnessPolicy(n_boot=0, dp_difference_max=0.03)
    )
    d = result.disparity(DEMOGRAPHIC_PARITY_DIFFERENCE, ("sex",))
    assert d.ci_low is None and d.ci_high is None
    assert d.value > 0.03 and d.breached
    assert all(g.selection_rate_ci is None for g in result.groups)


def test_breach_on_ci_needs_the_whole_interval_beyond(planted, planted_frame):
    # sex alone: a small true gap, estimate above a threshold set inside its interval.
    d = planted.disparity(DEMOGRAPHIC_PARITY_DIFFERENCE, ("sex",))
    assert d.ci_low < d.value
    threshold = (d.ci_low + d.value) / 2
    frame = planted_frame
    by_ci = assess_fairness(frame, ("sex",), FairnessPolicy(n_boot=50, dp_difference_max=threshold))
    by_estimate = assess_fairness(
        frame,
        ("sex",),
        FairnessPolicy(n_boot=50, dp_difference_max=threshold, breach_on="estimate"),
    )
    assert not by_ci.disparity(DEMOGRAPHIC_PARITY_DIFFERENCE, ("sex",)).breached
    assert by_estimate.disparity(DEMOGRAPHIC_PARITY_DIFFERENCE, ("sex",)).breached


def test_missing_values_are_their_own_group():
    frame = make_frame(n=5_000, seed=9)
    frame["sex"] = frame["sex"].astype("category")
    frame.loc[frame.index[:300], "sex"] = None
    result = assess_fairness(frame, ("sex",), FAST)
    assert result.group(("sex",), (MISSING_GROUP,)).size == 300
    assert sum(g.size for g in result.groups) == len(frame)


def test_categorical_columns_give_the_groups_and_numbers_of_their_text(planted_frame):
    frame = planted_frame.copy()
    frame.loc[frame.index[:200], "race"] = None
    categorical = frame.astype({name: "category" for name in PROTECTED})
    categorical["race"] = categorical["race"].cat.add_categories(["unseen"])
    categorical["age_band"] = pd.Categorical(frame["age_band"], categories=BANDS[::-1])
    assert assess_fairness(categorical, PROTECTED, FAST) == assess_fairness(frame, PROTECTED, FAST)


def test_metric_rows_long_format(planted):
    rows = fairness_metric_rows("adult", "2024-01-06", "v3", planted)
    for row in rows:
        assert tuple(row) == METRIC_KEYS
        assert row["metric"].startswith("fairness:")
        assert type(row["value"]) is float and math.isfinite(row["value"])
        assert row["threshold"] is None or math.isfinite(row["threshold"])
        assert type(row["breached"]) is bool
        assert (row["dataset"], row["ds"], row["model_version"]) == ("adult", "2024-01-06", "v3")

    selection = next(
        r
        for r in rows
        if r["metric"] == "fairness:selection_rate"
        and r["column"] == "sex × race"
        and r["group"] == "Female × Black"
    )
    female_black = planted.group(("sex", "race"), ("Female", "Black"))
    assert selection["value"] == female_black.selection_rate
    ratio = next(
        r
        for r in rows
        if r["metric"] == "fairness:demographic_parity_ratio" and r["column"] == "sex"
    )
    assert ratio["group"] is None and ratio["threshold"] == 0.8 and ratio["breached"] is False
    # Only a disparity's own row carries its decision.
    assert sum(r["breached"] for r in rows) == len(planted.breaches) > 0
    assert any(r["metric"] == "fairness:equalized_odds_difference:ci_high" for r in rows)


def test_to_json_is_plain(planted):
    document = json.loads(json.dumps(planted.to_json(), allow_nan=False))
    assert document["format"] == "tidewater.fairness/1"
    assert document["breaches"] == len(planted.breaches)
    assert len(document["groups"]) == len(planted.groups)
    assert document["policy"]["ci"] == [0.025, 0.975]


def test_html_escapes_values_and_column_names():
    frame = make_frame(n=5_000, seed=10, bias=1.5)
    frame.loc[frame.index[:400], "race"] = HOSTILE
    frame = frame.rename(columns={"sex": HOSTILE})
    result = assess_fairness(frame, (HOSTILE, "race"), FAST)
    html = fairness_html(result)

    assert "<script" not in html.lower()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<svg" in html and "<table" in html
    assert "<html" not in html and "<body" not in html
    assert "BREACHED" in html


def test_empty_inputs():
    assert assess_fairness(make_frame(n=500), (), FAST).groups == ()
    empty = assess_fairness(make_frame(n=500).iloc[:0], ("sex",), FAST)
    assert empty.rows == 0 and empty.groups == () and not empty.labels_present
    assert "Bias and fairness" in fairness_html(empty)
    with pytest.raises(KeyError):
        assess_fairness(make_frame(n=500), ("religion",), FAST)
    bad = make_frame(n=500)
    bad["label"] = 2.0
    with pytest.raises(ValueError):
        assess_fairness(bad, ("sex",), FAST)


def test_only_breaches_worse_than_the_models_holdout_count_as_regressions():
    from reports.fairness import regressions

    policy = FairnessPolicy(n_boot=50)
    as_trained = assess_fairness(make_frame(seed=5, bias=0.3), ["sex", "race"], policy)
    worse = assess_fairness(make_frame(seed=6, bias=0.6), ["sex", "race"], policy)
    assert worse.breaches
    assert regressions(as_trained, as_trained, 0.05) == []
    regressed = regressions(worse, as_trained, 0.05)
    assert regressed and all(before is not None for _, before in regressed)
    assert {d.attributes for d, _ in regressed} <= {("race",), ("sex", "race")}
    assert regressions(worse, None, 0.05) == []  # no baseline: reported, not counted
