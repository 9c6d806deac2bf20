"""Small seeded frames shaped like a scored dataset, and drift results built from them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from reports import DriftResult, build_drift_report

NUMERIC = ("age", "hours")
CATEGORICAL = ("education", "sex")
ROWS = 3_000

EDUCATION = ("HS-grad", "Some-college", "Bachelors", "Masters")


def make_frame(
    n: int = ROWS,
    seed: int = 0,
    *,
    age_shift: float = 0.0,
    education_p: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1),
    education_missing: float = 0.05,
    score_shift: float = 0.0,
) -> pd.DataFrame:
    """A scored frame; nullable Int64 ages and categorical values with missing entries."""
    rng = np.random.default_rng(seed)
    age = pd.array(rng.normal(40 + age_shift, 12, n).round().astype(int), dtype="Int64")
    age[rng.random(n) < 0.03] = pd.NA
    education = pd.Series(rng.choice(EDUCATION, n, p=education_p), dtype=object)
    education[rng.random(n) < education_missing] = None
    sex = pd.Series(rng.choice(["Male", "Female"], n, p=[0.67, 0.33]), dtype="string")
    sex[rng.random(n) < 0.02] = pd.NA
    score = np.clip(rng.beta(2, 5, n) + score_shift, 0, 1)
    return pd.DataFrame(
        {
            "age": age,
            "hours": rng.normal(40, 8, n),
            "education": education,
            "sex": sex,
            "score": score,
        }
    )


def drift(reference: pd.DataFrame, current: pd.DataFrame, **kwargs) -> DriftResult:
    return build_drift_report(
        reference, current, numeric=NUMERIC, categorical=CATEGORICAL, **kwargs
    )


@pytest.fixture(scope="session")
def frame() -> Callable[..., pd.DataFrame]:
    return make_frame


@pytest.fixture(scope="session")
def build() -> Callable[..., DriftResult]:
    return drift


@pytest.fixture(scope="session")
def reference() -> pd.DataFrame:
    return make_frame(seed=1)


@pytest.fixture(scope="session")
def no_drift(reference: pd.DataFrame) -> DriftResult:
    return drift(reference, make_frame(seed=2))


@pytest.fixture(scope="session")
def age_drift(reference: pd.DataFrame) -> DriftResult:
    return drift(reference, make_frame(seed=2, age_shift=8))


@pytest.fixture(scope="session")
def hostile_drift() -> DriftResult:
    reference = make_frame(seed=1)
    current = make_frame(seed=2, age_shift=8)
    current.loc[current.index[:300], "education"] = "</script><script>alert(1)</script>"
    return drift(reference, current)
