from datetime import date

import pytest

from reports import METRIC_KEYS, DriftPolicy, decide, drift_metric_rows


def test_one_row_per_column_and_a_dataset_row(age_drift):
    policy = DriftPolicy(retrain_share=0.3)
    rows = drift_metric_rows("adult", date(2024, 1, 6), "v3", age_drift, decide(age_drift, policy))

    assert len(rows) == len(age_drift.columns) + 1
    for row in rows:
        assert tuple(row) == METRIC_KEYS
        assert row["dataset"] == "adult"
        assert row["ds"] == "2024-01-06"
        assert row["model_version"] == "v3"
        assert row["group"] is None
        assert type(row["value"]) is float
        assert type(row["threshold"]) is float
        assert type(row["breached"]) is bool

    by_column = {r["column"]: r for r in rows[:-1]}
    assert by_column["age"]["metric"] == "drift:wasserstein"
    assert by_column["age"]["breached"]
    assert by_column["education"]["metric"] == "drift:jensenshannon"
    assert not by_column["education"]["breached"]
    assert {r["column"] for r in rows[:-1]} == {c.column for c in age_drift.columns}

    share = rows[-1]
    assert share["metric"] == "drifted_share"
    assert share["column"] is None
    assert share["value"] == 0.25  # 1 of 4 features
    assert share["threshold"] == 0.3
    assert share["breached"] is False


def test_dataset_row_breaches_at_retrain_share(age_drift):
    decision = decide(age_drift, DriftPolicy(retrain_share=0.25))
    rows = drift_metric_rows("adult", "2024-01-06", "v3", age_drift, decision)
    assert rows[-1]["breached"] is True
    assert rows[-1]["ds"] == "2024-01-06"


def test_quality_is_scikit_learns_on_the_labelled_rows_with_tied_scores():
    import numpy as np
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    from reports import quality_metric_rows

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(5000), 2)  # many ties
    scores[:3] = [0.0, 1.0, 0.5]
    labels = (rng.random(5000) < scores).astype(float)
    labels[rng.random(5000) < 0.2] = np.nan  # not labelled yet
    rows = quality_metric_rows("adult", "2024-01-06", "v3", labels, scores)
    values = {row["metric"]: row["value"] for row in rows}
    known = ~np.isnan(labels)
    y, p = labels[known], scores[known]
    assert values["quality:labelled_rows"] == known.sum()
    assert values["quality:auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    assert values["quality:logloss"] == pytest.approx(log_loss(y, clipped), abs=1e-12)
    assert values["quality:accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert values["quality:calibration_gap"] == pytest.approx(p.mean() - y.mean())


def test_quality_of_one_class_is_its_labelled_rows_only():
    import numpy as np

    from reports import quality_metric_rows

    rows = quality_metric_rows("adult", "2024-01-06", "v3", np.array([1.0, np.nan]), np.ones(2))
    assert [(row["metric"], row["value"]) for row in rows] == [("quality:labelled_rows", 1.0)]
