"""The per-stage summaries shown in the Prefect UI."""

from __future__ import annotations

import math

from reports import scoring_markdown, stage_summary_markdown, validation_markdown


def test_validation_lists_each_failed_check_with_its_rows_and_samples():
    markdown = validation_markdown(
        "adult",
        "2024-01-05",
        rows_in=100,
        rows_valid=88,
        failed_checks={"age: not a valid integer": 10, "row: education_num_matches": 2},
        samples=[
            {
                "row_id": "r1",
                "file": "wrong|types.csv",
                "line": 3,
                "checks": ["age: not a valid integer"],
                "values": "age='<script>'",
            }
        ],
        limit=0.2,
    )
    assert "quarantined: **12** (12.00%; the day fails above 20%)" in markdown
    assert "| age: not a valid integer | 10 |" in markdown
    assert "| row: education_num_matches | 2 |" in markdown
    assert "wrong\\|types.csv" in markdown and "<script>" not in markdown


def test_a_clean_day_has_no_check_table():
    markdown = validation_markdown("adult", "2024-01-01", 10, 10, {}, [], 0.2)
    assert "quarantined: **0**" in markdown and "Failed checks" not in markdown


def test_scoring_names_every_model_and_its_role():
    details = {
        "models": {"v2": "champion", "v3": "challenger"},
        "rows": 1234,
        "shards": [{}, {}],
        "rows_per_second": 5000,
        "devices": ["cpu"],
        "retried_shards": [1],
        "cluster": "Dask scheduler tcp://127.0.0.1:1: 2 workers",
    }
    markdown = scoring_markdown("adult", "2024-01-01", details)
    assert "| v2 | champion |" in markdown and "| v3 | challenger |" in markdown
    assert "1,234 in 2 shards" in markdown and "retried shards: 1" in markdown


def test_day_summary_shows_stages_resources_and_the_accounting():
    stages = [
        {"stage": "ingest", "status": "succeeded", "rows_in": 10, "rows_out": 9,
         "rows_diverted": 1, "model_version": None, "wall_seconds": 1.25,
         "cpu_seconds": 0.5, "gpu_seconds": math.nan, "peak_memory_bytes": 300 * 2**20},
        {"stage": "score", "status": "failed", "rows_in": math.nan, "rows_out": None,
         "rows_diverted": None, "model_version": "v1", "wall_seconds": None,
         "cpu_seconds": None, "gpu_seconds": None, "peak_memory_bytes": math.nan},
    ]  # fmt: skip
    account = {"landed": 10, "bronze": 9, "rejects": 1, "silver": 8, "quarantine": 1,
               "predictions": 8}  # fmt: skip
    markdown = stage_summary_markdown("adult", "2024-01-01", stages, account)
    assert "| ingest | succeeded | 10 | 9 | 1 | - | 1.2 | 0.5 | - | 300 |" in markdown
    assert "| score | failed | - | - | - | v1 | - | - | - | - |" in markdown
    assert "landed 10 = bronze 9 + rejects 1" in markdown
    assert "silver 8 = champion predictions 8" in markdown


def test_the_monitor_summary_gives_the_verdict_the_numbers_and_the_links():
    from reports import ColumnDrift, DriftResult, Verdict, monitor_markdown
    from reports.policy import DayAssessment

    drift = DriftResult(
        columns=(
            ColumnDrift("age", "psi", 0.31, 0.2, True),
            ColumnDrift("a|b", "psi", 0, 0.2, False),
        ),
        drifted_share=0.5,
        dataset_drift=False,
        reference_rows=1000,
        current_rows=5000,
    )
    day = DayAssessment("2024-01-06", Verdict.RETRAIN, (), Verdict.WARN, ("hysteresis: 1 of 3",))
    quality = {"labelled_rows": 4000.0, "auc": 0.91, "logloss": 0.3, "calibration_gap": 0.01}
    links = {"Day report": "http://r/adult/2024-01-06/monitor.html", "Trend": None}
    markdown = monitor_markdown("adult", "2024-01-06", "v3", day, drift, quality, links)
    assert "**Verdict: WARN** (drift alone: retrain; bias breaches: 0)" in markdown
    assert "- hysteresis: 1 of 3" in markdown
    assert "AUC 0.910, log-loss 0.300, calibration gap +0.010 on 4,000 labelled rows" in markdown
    assert "| age | psi | 0.31 | 0.20 | **yes** |" in markdown and "a\\|b" in markdown
    assert "[Day report](http://r/adult/2024-01-06/monitor.html)" in markdown
    assert "Trend" not in markdown.splitlines()[-1]
    unlabelled = monitor_markdown(
        "adult", "2024-01-06", "v3", day, drift, {"labelled_rows": 0.0}, {}
    )
    assert "0 labelled rows: not enough for quality yet" in unlabelled
    assert "run `tidewater serve` for links" in unlabelled
