"""The operator's pages show every number they are given and escape every value and name."""

from __future__ import annotations

import pandas as pd

from reports import ColumnDrift, DriftResult, Verdict
from reports.pages import day_page, trend_page
from reports.policy import DayAssessment

HOSTILE = "</script><script>alert(1)</script>"


def drift(column: str = "age") -> DriftResult:
    return DriftResult(
        columns=(
            ColumnDrift(column, "psi", 0.31, 0.2, True),
            ColumnDrift("score", "psi", 0.01, 0.2, False),
        ),
        drifted_share=0.5,
        dataset_drift=False,
        reference_rows=1000,
        current_rows=5000,
    )


def test_the_day_page_shows_the_decision_drift_and_quality():
    day = DayAssessment(
        "2024-01-06", Verdict.RETRAIN, ("sex: dp ratio",), Verdict.WARN, ("hysteresis: 1 of 3",)
    )
    page = day_page("adult", "2024-01-06", "v1", day, drift(), {"auc": 0.91, "labelled_rows": 10.0})
    assert "verdict-warn'>warn<" in page
    assert "hysteresis: 1 of 3" in page and "sex: dp ratio" in page
    assert "<tr class='breach'><td>age</td><td>psi</td>" in page
    assert "0.91" in page and "5,000 rows against 1,000" in page


def test_the_pages_escape_values_and_column_names():
    day = DayAssessment("2024-01-06", Verdict.OK, (HOSTILE,), Verdict.OK, (HOSTILE,))
    page = day_page("adult", "2024-01-06", "v1", day, drift(HOSTILE), {HOSTILE: 1.0})
    metrics = pd.DataFrame(
        {
            "ds": ["2024-01-05", "2024-01-06"],
            "metric": ["drift:psi", "drift:psi"],
            "column": [HOSTILE, HOSTILE],
            "group": [None, None],
            "value": [0.1, 0.3],
            "threshold": [0.2, 0.2],
        }
    )
    trend = trend_page(HOSTILE, metrics)
    for html in (page, trend):
        assert "<script>" not in html
        assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_trend_draws_one_line_per_column_and_the_verdicts():
    metrics = pd.DataFrame(
        {
            "ds": ["2024-01-05", "2024-01-06", "2024-01-05", "2024-01-06", "2024-01-06"],
            "metric": ["drift:psi"] * 4 + ["decision:verdict"],
            "column": ["age", "age", "hours", "hours", None],
            "group": [None] * 5,
            "value": [0.1, 0.3, 0.05, 0.02, 2.0],
            "threshold": [0.2, 0.2, 0.2, 0.2, 2.0],
        }
    )
    trend = trend_page("adult", metrics)
    assert trend.count("<polyline") == 2
    assert "<td>2024-01-06</td><td>retrain</td>" in trend
