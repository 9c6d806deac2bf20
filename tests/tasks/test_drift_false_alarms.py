"""An honest reference: a clean day from the model's own population raises no score-drift
alarm. The reference is the model's holdout with its scores, out of sample like the day."""

from __future__ import annotations

import pytest
import xgboost as xgb

from datasets import get_dataset
from reports import DriftPolicy, Verdict
from tasks.features import feature_matrix
from tasks.monitoring import assess_drift
from tasks.training import train_classifier

ADULT = get_dataset("adult")
SEEDS = range(1, 21)


@pytest.mark.slow
def test_clean_held_out_days_raise_no_score_drift_alarm_over_20_seeds():
    trained = train_classifier(ADULT.synthesize(20_000, seed=0), ADULT.roles, rounds=100)
    features = list(trained.spec.names)
    alarms, verdicts = 0, []
    for seed in SEEDS:
        day = ADULT.synthesize(6_000, seed=seed)
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
