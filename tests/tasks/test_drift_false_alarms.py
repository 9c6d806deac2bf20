"""An honest reference: a clean day from the model's own population raises no score-drift
alarm. The reference is the model's holdout with its scores, out of sample like the day
(`test_training.py` holds the reference to the holdout; this measures the alarm rate)."""

from __future__ import annotations

import pytest
import xgboost as xgb

from datasets import adult, get_dataset
from reports import DriftPolicy, Verdict
from tasks.features import feature_matrix
from tasks.monitoring import assess_drift
from tasks.training import train_classifier

ADULT = get_dataset("adult")
SEEDS = range(1, 21)


@pytest.mark.slow
def test_clean_held_out_days_raise_no_score_drift_alarm_over_20_seeds():
    rows = adult.load_adult().sample(frac=1.0, random_state=0).reset_index(drop=True)
    window, unseen = rows.iloc[:15_000], rows.iloc[15_000:]
    trained = train_classifier(window, ADULT.roles)  # default parameters, as users train
    features = list(trained.spec.names)
    alarms, verdicts = 0, []
    for seed in SEEDS:
        day = unseen.sample(3_000, random_state=seed)
        matrix = xgb.DMatrix(feature_matrix(day, trained.spec), feature_names=features)
        current = day[features].assign(score=trained.booster.predict(matrix))
        result, decision = assess_drift.fn(
            trained.reference, current, ADULT.roles, DriftPolicy(), 100_000
        )
        alarms += next(c.drifted for c in result.columns if c.column == "score")
        verdicts.append(decision.verdict)
    rate = alarms / len(SEEDS)
    print(f"score-drift false-alarm rate over {len(SEEDS)} clean days: {rate:.0%}")
    assert rate <= 0.05
    assert verdicts.count(Verdict.RETRAIN) == 0
