"""An honest reference: a clean day from the model's own population raises no drift alarm,
and a day with planted drift does. The reference is the model's holdout with its scores,
out of sample like the day. Measured for both drift measures: the full-data one (every
row, from the score step's histograms against the model's reference profile), which
decides the verdict, and Evidently's report of a sample."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from datasets import adult, get_dataset
from reports import DriftPolicy, Verdict, decide
from reports.profile import profile_drift
from tasks.features import feature_matrix
from tasks.monitoring import sample_drift
from tasks.profiles import HistogramPass
from tasks.training import train_classifier

ADULT = get_dataset("adult")
SEEDS = range(1, 21)


@pytest.fixture(scope="module")
def model_and_unseen():
    rows = adult.load_adult().sample(frac=1.0, random_state=0).reset_index(drop=True)
    window, unseen = rows.iloc[:15_000], rows.iloc[15_000:]
    return train_classifier(window, ADULT.roles), unseen  # default parameters, as users train


def scored(trained, day):
    matrix = feature_matrix(day, trained.spec)
    scores = trained.booster.predict(xgb.DMatrix(matrix, feature_names=list(trained.spec.names)))
    return matrix, scores


def full_data(trained, day):
    matrix, scores = scored(trained, day)
    counts = HistogramPass(trained.profile)
    counts.add(counts.measure(matrix, scores, device="cpu"))
    return profile_drift(trained.profile, counts.result())


@pytest.mark.slow
def test_clean_held_out_days_raise_no_drift_alarm_over_20_seeds(model_and_unseen):
    trained, unseen = model_and_unseen
    features = list(trained.spec.names)
    alarms = {"full data": 0, "Evidently sample": 0}
    verdicts, days_with_a_drifted_column = [], 0
    for seed in SEEDS:
        day = unseen.sample(3_000, random_state=seed)
        full = full_data(trained, day)
        _, scores = scored(trained, day)
        sample = sample_drift(
            trained.reference,
            day[features].assign(score=scores),
            ADULT.roles,
            DriftPolicy(),
            100_000,
        )
        alarms["full data"] += full.column("score").drifted
        alarms["Evidently sample"] += sample.result.column("score").drifted
        verdicts.append(decide(full, DriftPolicy()).verdict)
        days_with_a_drifted_column += bool(full.drifted)
    for measure, count in alarms.items():
        print(f"{measure}: score-drift false-alarm rate over {len(SEEDS)} clean days "
              f"{count / len(SEEDS):.0%}")  # fmt: skip
        assert count / len(SEEDS) <= 0.05
    print(f"full data: days with any drifted column {days_with_a_drifted_column} of {len(SEEDS)}")
    assert verdicts.count(Verdict.RETRAIN) == 0


@pytest.mark.slow
def test_planted_drift_is_flagged_by_the_full_data_drift(model_and_unseen):
    trained, unseen = model_and_unseen
    day = adult.apply_drift(unseen.sample(3_000, random_state=0), 1.0, np.random.default_rng(0))
    full = full_data(trained, day)
    assert full.column("age").drifted
    assert decide(full, DriftPolicy()).verdict is Verdict.RETRAIN
