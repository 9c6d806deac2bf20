"""Full-data drift statistics: PSI and Jensen-Shannon on histograms, effect-size thresholds
that hold at large N, the reference profile's JSON round trip and its drift verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reports.profile import (
    CATEGORICAL,
    NUMERIC,
    SCORE,
    ColumnProfile,
    HistogramDriftThresholds,
    ReferenceProfile,
    jensen_shannon,
    profile_drift,
    psi,
    trim_counts,
    wasserstein,
)

EDGES = np.linspace(-2, 2, 9, dtype=np.float32)  # 10 bins + missing


def counts_of(values: np.ndarray, edges: np.ndarray = EDGES) -> np.ndarray:
    """Reference implementation of the layout: bin = number of edges <= x, last = NaN."""
    nan = np.isnan(values)
    bins = np.searchsorted(edges, values[~nan].astype(np.float32), side="right")
    return np.append(np.bincount(bins, minlength=edges.size + 1), nan.sum()).astype(np.int64)


def normal_counts(n: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return counts_of(rng.normal(shift, scale, n))


def categorical_counts(n: int, seed: int, p: tuple[float, ...]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.bincount(rng.choice(len(p), size=n, p=p), minlength=len(p)).astype(np.int64)


CATEGORY_P = (0.45, 0.25, 0.15, 0.1, 0.05)  # 4 vocabulary codes + unknown/missing


def test_identical_histograms_have_no_drift():
    ref = normal_counts(10_000, 0)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(ref, ref) == pytest.approx(0.0, abs=1e-7)
    # scale does not matter, shares do
    assert psi(ref, 7 * ref) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(ref, 7 * ref) == pytest.approx(0.0, abs=1e-7)


def test_planted_shifts_are_above_the_default_thresholds():
    limits = HistogramDriftThresholds()
    ref = normal_counts(20_000, 0)
    assert psi(ref, normal_counts(20_000, 1, shift=0.5)) >= limits.psi
    assert psi(ref, normal_counts(20_000, 1, scale=1.6)) >= limits.psi
    cat_ref = categorical_counts(20_000, 0, CATEGORY_P)
    moved = categorical_counts(20_000, 1, (0.25, 0.25, 0.15, 0.1, 0.25))  # 20% to unknown
    assert jensen_shannon(cat_ref, moved) >= limits.jensen_shannon


@pytest.mark.parametrize("n_current", [100_000, 10_000_000])
def test_large_n_of_the_same_distribution_stays_below_the_thresholds(n_current):
    """Effect sizes, not tests: a huge current day of the reference population is clean
    (a p-value test at this N flags differences of 0.1%)."""
    limits = HistogramDriftThresholds()
    ref = normal_counts(5_000, 0)
    rng = np.random.default_rng(3)
    ref_values = np.random.default_rng(0).normal(0, 1, 5_000)
    # 10M draws through the exact bin probabilities of N(0, 1), no 10M-row array needed
    from math import erf, sqrt

    cdf = np.array([0.5 * (1 + erf(e / sqrt(2))) for e in EDGES.astype(float)])
    p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    cur = np.append(rng.multinomial(n_current, p), 0)
    assert psi(ref, cur) < limits.psi / 4
    normed = wasserstein(ref, cur, EDGES, -4.0, 4.0, ref_values.std())
    assert normed < limits.wasserstein / 2
    cat_cur = rng.multinomial(n_current, CATEGORY_P)
    assert jensen_shannon(categorical_counts(5_000, 0, CATEGORY_P), cat_cur) < (
        limits.jensen_shannon / 2
    )


def test_empty_bins_give_finite_values_and_js_is_bounded():
    ref = np.array([100, 0, 0, 0])
    cur = np.array([0, 0, 0, 100])
    assert np.isfinite(psi(ref, cur)) and psi(ref, cur) > 5
    assert jensen_shannon(ref, cur) == pytest.approx(np.sqrt(np.log(2)))
    # a handful of rows in a bin the reference never saw, out of millions, adds ~nothing
    assert psi(np.array([500, 500, 0]), np.array([1_000_000, 1_000_000, 3])) < 1e-6
    with pytest.raises(ValueError, match="shape"):
        psi(np.ones(3), np.ones(4))


def test_jensen_shannon_is_scipys_and_evidentlys_distance():
    from scipy.spatial.distance import jensenshannon

    ref = categorical_counts(10_000, 0, CATEGORY_P)
    cur = categorical_counts(10_000, 1, (0.25, 0.25, 0.15, 0.1, 0.25))
    assert jensen_shannon(ref, cur) == pytest.approx(jensenshannon(ref, cur), rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3, 1.0])
def test_binned_wasserstein_is_close_to_the_exact_normed_distance(shift):
    """Normed like Evidently's: W1(ref, cur) / std(ref); deciles and tail quantiles (the
    binning of `tasks.profiles.numeric_edges`) of a normal sample."""
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 2, 50_000), rng.normal(2 * shift, 2, 50_000)
    probs = [0.001, 0.01, 0.05, *np.linspace(0.1, 0.9, 9), 0.95, 0.99, 0.999]
    edges = np.quantile(ref, probs).astype(np.float32)
    exact = wasserstein_distance(ref, cur) / ref.std()
    binned = wasserstein(
        counts_of(ref, edges), counts_of(cur, edges), edges, ref.min(), ref.max(), ref.std()
    )
    assert binned == pytest.approx(exact, rel=0.03, abs=0.005)


def test_binned_wasserstein_of_point_masses_is_exact():
    from scipy.stats import wasserstein_distance

    ref = np.repeat([1.0, 2.0, 5.0], [50, 30, 20])
    cur = np.repeat([1.0, 2.0, 5.0], [20, 30, 50])
    edges = np.array([1, np.nextafter(np.float32(1), np.float32(2)), 2, 2.0000002, 5], np.float32)
    binned = wasserstein(counts_of(ref, edges), counts_of(cur, edges), edges, 1.0, 5.0, 1.0)
    assert binned == pytest.approx(wasserstein_distance(ref, cur), rel=1e-5)
    with pytest.raises(ValueError, match="fit"):
        wasserstein(np.ones(3), np.ones(3), edges, 1.0, 5.0, 1.0)


def test_statistics_broadcast_over_rows():
    ref = np.stack([normal_counts(5_000, 0), normal_counts(5_000, 1)])
    cur = np.stack([normal_counts(5_000, 2), normal_counts(5_000, 3, shift=1.0)])
    values = psi(ref, cur)
    assert values.shape == (2,) and values[0] < 0.05 < 0.5 < values[1]
    assert jensen_shannon(ref, cur).shape == (2,)


def make_profile(rows: int = 5_000) -> ReferenceProfile:
    score_edges = np.array([0.1, 0.3, 0.5, 0.7, 0.9], np.float32)
    rng = np.random.default_rng(9)
    score = counts_of(rng.beta(2, 2, rows), score_edges)
    return ReferenceProfile(
        columns=(
            ColumnProfile(
                "age", NUMERIC, EDGES, normal_counts(rows, 0), low=-4.0, high=4.0, scale=1.0
            ),
            ColumnProfile(
                "sex",
                CATEGORICAL,
                np.array([0.5, 1.5, 2.5], np.float32),
                categorical_counts(rows, 0, CATEGORY_P),
                labels=("a", "b", "c", "</script><script>alert(1)</script>"),
            ),
            ColumnProfile("score", SCORE, score_edges, score, low=0.0, high=1.0, scale=0.22),
        ),
        reference_rows=rows,
    )


def test_profile_json_round_trip_is_exact():
    profile = make_profile()
    again = ReferenceProfile.from_json(json.loads(json.dumps(profile.to_json())))
    assert again == profile
    assert again.column("age").edges.dtype == np.float32
    np.testing.assert_array_equal(again.column("age").edges, profile.column("age").edges)
    assert again.feature_names == ("age", "sex") and again.score.name == "score"
    assert again.column("age").scale == 1.0 and np.isnan(again.column("sex").scale)
    with pytest.raises(ValueError, match="format"):
        ReferenceProfile.from_json({**profile.to_json(), "format": 99})


def test_a_profile_is_consistent_or_refused():
    good = make_profile()
    spread = {"low": -4.0, "high": 4.0, "scale": 1.0}
    with pytest.raises(ValueError, match="reference counts"):
        ColumnProfile("x", NUMERIC, EDGES, np.ones(3), **spread)
    with pytest.raises(ValueError, match="ascending"):
        ColumnProfile("x", NUMERIC, EDGES[::-1], np.ones(EDGES.size + 2), **spread)
    with pytest.raises(ValueError, match="low, high, scale"):
        ColumnProfile("x", NUMERIC, EDGES, np.ones(EDGES.size + 2))
    with pytest.raises(ValueError, match="score column"):
        ReferenceProfile(good.columns[:2], good.reference_rows)
    with pytest.raises(ValueError, match="sum to"):
        ReferenceProfile(good.columns, good.reference_rows + 1)


@pytest.mark.parametrize("numeric", ["wasserstein", "psi"])
def test_profile_drift_flags_the_shifted_columns_only(numeric):
    profile = make_profile()
    limits = HistogramDriftThresholds(numeric=numeric)
    rng = np.random.default_rng(11)
    n = 200_000
    clean = {
        "age": normal_counts(n, 1),
        "sex": categorical_counts(n, 1, CATEGORY_P),
        "score": counts_of(rng.beta(2, 2, n), profile.score.edges),
    }
    result = profile_drift(profile, clean, limits)
    assert not result.drifted and not result.dataset_drift
    assert result.current_rows == n and result.reference_rows == profile.reference_rows
    assert [c.method for c in result.columns] == [numeric, "jensenshannon", numeric]

    drifted = clean | {"age": normal_counts(n, 2, shift=0.8)}
    result = profile_drift(profile, drifted, limits)
    assert [c.column for c in result.drifted] == ["age"]
    assert result.column("age").threshold == (0.2 if numeric == "psi" else 0.1)
    assert result.drifted_share == pytest.approx(1 / 3) and not result.dataset_drift

    strict = HistogramDriftThresholds(
        numeric=numeric, psi=0.01, wasserstein=0.01, jensen_shannon=0.001, drift_share=0.3
    )
    assert profile_drift(profile, drifted, strict).dataset_drift


def test_a_small_mean_shift_is_drift_for_wasserstein_and_not_for_psi():
    """The calibration difference the thresholds' docstring states: 0.2 sd moves the mean
    by twice Wasserstein's threshold and leaves PSI far below 0.2."""
    profile = make_profile(50_000)
    n = 200_000
    rng = np.random.default_rng(5)
    day = {
        "age": normal_counts(n, 4, shift=0.2),
        "sex": categorical_counts(n, 1, CATEGORY_P),
        "score": counts_of(rng.beta(2, 2, n), profile.score.edges),
    }
    by_default = profile_drift(profile, day).column("age")
    by_psi = profile_drift(profile, day, HistogramDriftThresholds(numeric="psi")).column("age")
    assert by_default.drifted and by_default.value == pytest.approx(0.2, abs=0.03)
    assert not by_psi.drifted and by_psi.value < 0.1


def test_profile_drift_refuses_histograms_that_do_not_fit():
    profile = make_profile()
    counts = {c.name: c.reference for c in profile.columns}
    with pytest.raises(KeyError, match="score"):
        profile_drift(profile, {"age": counts["age"], "sex": counts["sex"]})
    with pytest.raises(ValueError, match="different rows"):
        profile_drift(profile, counts | {"age": 2 * counts["age"]})
    with pytest.raises(ValueError, match="current counts"):
        profile_drift(profile, counts | {"age": np.append(counts["age"][:-1], [0, 0])})
    empty = profile_drift(profile, {n: np.zeros_like(c) for n, c in counts.items()})
    assert empty.current_rows == 0 and not empty.drifted
    assert all(np.isnan(c.value) for c in empty.columns)


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        HistogramDriftThresholds(psi=0)
    with pytest.raises(ValueError):
        HistogramDriftThresholds(jensen_shannon=1.5)
    with pytest.raises(ValueError, match="numeric"):
        HistogramDriftThresholds(numeric="ks")


def test_trim_counts_keeps_the_bins_and_the_missing_count():
    assert trim_counts(np.array([1, 2, 3, 0, 0, 7]), 2).tolist() == [1, 2, 3, 7]
    with pytest.raises(ValueError, match="padding"):
        trim_counts(np.array([1, 2, 3, 5, 0, 7]), 2)
