from datetime import date

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
