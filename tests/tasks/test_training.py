"""Training refuses models that cannot be useful, and measures drift against held-out rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datasets import FeatureRoles, get_dataset, labels_of
from tasks.training import (
    ModelRefused,
    check_model_sanity,
    text_like_columns,
    train_classifier,
)

ADULT = get_dataset("adult")


def test_an_integer_target_matches_its_positive_label_by_value():
    roles = FeatureRoles(numeric=("x",), categorical=(), target="credit", positive_label="1")
    frame = pd.DataFrame({"x": [0.1, 0.2, 0.3], "credit": pd.array([1, 2, 1], dtype="Int64")})
    assert labels_of(frame, roles).tolist() == [1.0, 0.0, 1.0]
    as_text = frame.assign(credit=[" 1", "2", "1"])
    assert labels_of(as_text, roles).tolist() == [1.0, 0.0, 1.0]
    as_categories = frame.assign(credit=pd.Categorical([" 1", "2", None]))
    assert labels_of(as_categories, roles).tolist() == [1.0, 0.0, 0.0]
    unknown = frame.assign(credit=pd.Categorical([None] * 3, categories=[]))  # a batch of nulls
    assert labels_of(unknown, roles).tolist() == [0.0, 0.0, 0.0]


def test_a_positive_label_that_matches_nothing_is_refused_with_the_values_seen():
    roles = FeatureRoles(numeric=("x",), categorical=(), target="credit", positive_label="yes")
    frame = pd.DataFrame({"x": np.arange(100.0), "credit": [1, 2] * 50})
    with pytest.raises(ModelRefused, match=r"'yes' matches 0 of 100 .*values seen: 1, 2"):
        train_classifier(frame, roles, rounds=2)


@pytest.mark.parametrize(
    ("labels", "scores", "reason"),
    [
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "one class only"),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], "scores every holdout row the same"),
        ([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2], "AUC 0.000 is below the floor 0.600"),
    ],
)
def test_sanity_gates_refuse_useless_models(labels, scores, reason):
    with pytest.raises(ModelRefused, match=reason):
        check_model_sanity(np.array(labels, float), np.array(scores), min_auc=0.6)


def test_a_useful_model_passes_and_its_reference_is_the_holdout():
    frame = ADULT.synthesize(4000, seed=1)
    trained = train_classifier(frame, ADULT.roles, rounds=20)
    check_model_sanity(trained.holdout_labels, trained.holdout_scores, min_auc=0.6)
    assert len(trained.reference) == len(trained.holdout_scores) < 0.3 * len(frame)
    np.testing.assert_allclose(trained.reference["score"], trained.holdout_scores, rtol=1e-6)


def test_a_categorical_of_nearly_all_distinct_values_is_named_as_text_like():
    roles = FeatureRoles(
        numeric=(), categorical=("charge", "state"), target="credit", positive_label="1"
    )
    frame = pd.DataFrame(
        {"charge": [f"charge text {i}" for i in range(300)], "state": ["CA", "NY", "TX"] * 100}
    )
    assert text_like_columns(frame, roles) == ["charge"]
