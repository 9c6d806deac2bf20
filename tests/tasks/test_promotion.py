"""Promotion and rollback move the champion alias, tag both versions and write a ledger row."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks.lake import Lake
from tasks.ledger import read_ledger
from tasks.promotion import PREVIOUS_TAG, STATUS_TAG, promote, rollback
from tasks.scoring import resolve_models


def model_json(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    X = rng.random((100, 2))
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, label=X[:, 0] > 0.5), 2)
    return bytes(booster.save_raw(raw_format="json"))


@pytest.fixture
def two_versions(registry):
    for seed in range(2):
        registry.register_model(
            {
                "dataset": "adult",
                "created_at": "2024-01-01",
                "objective": "binary:logistic",
                "features": {},
                "target": "income",
                "positive_label": ">50K",
                "trained_on": {"version": seed, "ds": ["2024-01-01"]},
            },
            model_json(seed),
            pd.DataFrame({"a": [1.0]}),
        )
    registry.set_alias("adult", "champion", "v1")
    registry.set_alias("adult", "challenger", "v2")
    return registry


def test_promote_then_roll_back(two_versions, tmp_path):
    registry, lake = two_versions, Lake(str(tmp_path / "lake"))
    assert promote(registry, lake, "adult", "v2", "shadow window passed", by="test") == (
        "v1",
        "v2",
    )
    assert registry.aliases("adult") == {"champion": "v2"}  # the challenger alias is gone
    assert [r.version for r in resolve_models.fn(registry, "adult")] == ["v2"]
    new, old = registry.version_tags("adult", "v2"), registry.version_tags("adult", "v1")
    assert new[STATUS_TAG] == "champion" and new[PREVIOUS_TAG] == "v1"
    assert old[STATUS_TAG] == "retired" and old["tidewater.replaced_by"] == "v2"

    assert rollback(registry, lake, "adult", reason="bad day", by="test") == ("v2", "v1")
    assert registry.alias("adult", "champion") == "v1"
    assert registry.version_tags("adult", "v2")[STATUS_TAG] == "rolled_back"
    assert registry.version_tags("adult", "v1")[STATUS_TAG] == "champion"

    ledger = read_ledger(lake, "adult")
    today = datetime.now(UTC).date().isoformat()
    assert list(ledger["stage"]) == ["promote", "rollback"]
    assert set(ledger["ds"]) == {today} and list(ledger["model_version"]) == ["v2", "v1"]
    assert ledger["details"][0] == {
        "from": "v1",
        "to": "v2",
        "by": "test",
        "reason": "shadow window passed",
    }
    assert ledger["details"][1] == {"from": "v2", "to": "v1", "by": "test", "reason": "bad day"}


def test_bad_versions_are_refused_and_leave_the_champion(two_versions, tmp_path):
    registry, lake = two_versions, Lake(str(tmp_path / "lake"))
    with pytest.raises(FileNotFoundError, match="adult v7"):
        promote(registry, lake, "adult", "v7")
    with pytest.raises(LookupError, match="no previous champion"):
        rollback(registry, lake, "adult")
    assert registry.alias("adult", "champion") == "v1"
    assert read_ledger(lake, "adult").empty
