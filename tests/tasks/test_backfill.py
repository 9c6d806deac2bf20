"""A backfill plan lists every day of its range once and reruns exactly the landed days its
policy picks, judged by the latest ledger status of each pipeline stage."""

from __future__ import annotations

import pytest

from tasks.backfill import (
    BACKFILL_POLICIES,
    PIPELINE_STAGES,
    RELANDED,
    PlannedDay,
    landing_changed,
    plan_backfill,
    plan_table_rows,
    repair_stages,
    with_dependents,
)
from tasks.ledger import STAGES

DONE = dict.fromkeys(PIPELINE_STAGES, "succeeded") | {"pipeline": "succeeded"}


def row(ds: str, stages: dict[str, str], errors: dict[str, str] | None = None) -> dict:
    """A row shaped like `day_status`'s (the columns the plan does not read left empty)."""
    return {"ds": ds, "landed": 10, "verdict": None, "stages": stages, "errors": errors or {}}


def to_run(plan: list[PlannedDay]) -> list[str]:
    return [day.ds for day in plan if day.run]


# 01 complete; 02 never ran; 03 validate failed; 04 score failed, then succeeded on a rerun;
# 05 ingest crashed; 06 nothing landed; 07 stopped after ingest; 08 accounting failed.
LANDED = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-07"]
LANDED += ["2024-01-08"]
ROWS = [
    row("2024-01-01", DONE),
    row(
        "2024-01-03",
        {"ingest": "succeeded", "validate": "failed", "pipeline": "failed"},
        {"validate": "SchemaError: column age\nTraceback ...", "pipeline": "SchemaError"},
    ),
    row("2024-01-04", DONE),
    row("2024-01-05", {"ingest": "crashed"}, {"ingest": "Crashed: worker died"}),
    row("2024-01-07", {"ingest": "succeeded"}),
    row("2024-01-08", DONE | {"pipeline": "failed"}, {"pipeline": "AccountingError: 3 rows"}),
]


def plan(policy: str, **kwargs) -> list[PlannedDay]:
    return plan_backfill(LANDED, ROWS, "2024-01-01", "2024-01-08", policy, **kwargs)


def test_every_day_of_the_range_is_listed_once_oldest_first():
    for policy in BACKFILL_POLICIES:
        days = [day.ds for day in plan(policy)]
        assert days == [f"2024-01-0{n}" for n in range(1, 9)]


def test_missing_replans_only_landed_days_that_never_completed():
    assert to_run(plan("missing")) == ["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-07"]
    why = {day.ds: day.why for day in plan("missing")}
    assert why["2024-01-01"] == "already succeeded"
    assert why["2024-01-02"] == "landed, never succeeded"
    assert why["2024-01-07"] == "landed, validate never ran"


def test_missing_is_idempotent_once_every_day_succeeded():
    done = [row(ds, DONE) for ds in LANDED]
    again = plan_backfill(LANDED, done, "2024-01-01", "2024-01-08", "missing")
    assert to_run(again) == []
    assert {day.why for day in again if day.ds in LANDED} == {"already succeeded"}


def test_failed_picks_only_days_whose_latest_attempt_did_not_succeed():
    # 04 failed and then succeeded: its latest attempt is what counts; 02 and 07 never failed.
    assert to_run(plan("failed")) == ["2024-01-03", "2024-01-05", "2024-01-08"]
    why = {day.ds: day.why for day in plan("failed")}
    assert why["2024-01-03"] == "last validate failed: SchemaError: column age"
    assert why["2024-01-05"] == "last ingest crashed: Crashed: worker died"
    assert why["2024-01-08"] == "last pipeline failed: AccountingError: 3 rows"
    assert why["2024-01-04"] == "already succeeded"


def test_failed_counts_interrupted_and_cancelled_attempts():
    rows = [
        row("2024-01-01", DONE | {"score": "interrupted"}),
        row("2024-01-02", DONE | {"monitor": "cancelled"}, {"monitor": "Cancelled"}),
    ]
    picked = plan_backfill(["2024-01-01", "2024-01-02"], rows, "2024-01-01", "2024-01-02", "failed")
    assert [day.why for day in picked] == [
        "last score interrupted",
        "last monitor cancelled: Cancelled",
    ]
    assert to_run(picked) == ["2024-01-01", "2024-01-02"]


def test_a_day_running_now_is_missing_not_failed():
    # a backfill killed midway leaves its days running; the next one adopts their runs
    rows = [row("2024-01-01", {"ingest": "succeeded", "validate": "succeeded", "score": "running"})]
    for policy, runs in (("missing", True), ("failed", False)):
        (day,) = plan_backfill(["2024-01-01"], rows, "2024-01-01", "2024-01-01", policy)
        assert (day.run, day.why) == (runs, "landed, score running now")


def test_all_picks_every_landed_day():
    assert to_run(plan("all")) == LANDED
    assert next(day.why for day in plan("all") if day.ds == "2024-01-01").startswith(
        "already succeeded"
    )


def test_days_with_nothing_landed_are_listed_not_run():
    for policy in BACKFILL_POLICIES:
        (unlanded,) = [day for day in plan(policy) if day.ds == "2024-01-06"]
        assert unlanded == PlannedDay("2024-01-06", False, "nothing landed", ())
    # Ledger rows of a day whose landing partition is gone do not make it run.
    gone = plan_backfill(
        [], [row("2024-01-01", {"ingest": "failed"})], "2024-01-01", "2024-01-01", "all"
    )
    assert gone == [PlannedDay("2024-01-01", False, "nothing landed", ())]


def test_missing_and_failed_rerun_from_the_first_stage_not_done_reusing_what_succeeded():
    assert PIPELINE_STAGES == ("ingest", "validate", "score", "monitor")
    assert set(PIPELINE_STAGES) <= set(STAGES)
    stages = {day.ds: day.stages for day in plan("missing")}
    assert stages == {
        "2024-01-01": (),
        "2024-01-02": PIPELINE_STAGES,  # never ran
        "2024-01-03": ("validate", "score", "monitor"),  # validate failed, ingest reused
        "2024-01-04": (),
        "2024-01-05": PIPELINE_STAGES,  # ingest crashed
        "2024-01-06": (),  # nothing landed
        "2024-01-07": ("validate", "score", "monitor"),  # stopped after ingest
        "2024-01-08": (),
    }
    # every stage done, the pipeline run failed (accounting): nothing known good, all rerun
    assert {day.ds: day.stages for day in plan("failed")}["2024-01-08"] == PIPELINE_STAGES


def test_all_reruns_every_stage_of_every_landed_day():
    assert {day.stages for day in plan("all") if day.run} == {PIPELINE_STAGES}


def test_chosen_stages_run_with_their_dependents_on_the_days_the_policy_picks():
    chosen = plan("all", stages=["score"])
    assert {day.stages for day in chosen if day.run} == {("score", "monitor")}
    assert to_run(chosen) == to_run(plan("all"))
    only_monitor = plan("missing", stages=["monitor"])
    assert {day.stages for day in only_monitor if day.run} == {("monitor",)}


def test_with_dependents_reruns_every_later_stage_and_refuses_unknown_names():
    assert with_dependents(["monitor", "validate"]) == ("validate", "score", "monitor")
    assert with_dependents(["ingest"]) == PIPELINE_STAGES
    with pytest.raises(ValueError, match="unknown pipeline stage 'shadow'"):
        with_dependents(["shadow"])
    with pytest.raises(ValueError, match="none given"):
        with_dependents([])


def test_repair_reruns_the_first_stage_not_done_and_what_depends_on_it():
    assert repair_stages(ROWS[0]) == ()
    assert repair_stages(ROWS[1]) == ("validate", "score", "monitor")
    assert repair_stages({"stages": DONE | {"score": "crashed"}}) == ("score", "monitor")
    assert repair_stages({"stages": DONE | {"pipeline": "failed"}}) == PIPELINE_STAGES
    assert repair_stages(None) == PIPELINE_STAGES


def test_newest_first_reverses_the_plan():
    for policy in BACKFILL_POLICIES:
        assert plan(policy, newest_first=True) == plan(policy)[::-1]


def test_table_rows_say_run_or_skip_why_and_the_stages():
    rows = plan_table_rows(plan("missing"))
    assert rows[0] == ("2024-01-01", "skip", "already succeeded", "")
    assert rows[1] == (
        "2024-01-02",
        "run",
        "landed, never succeeded",
        "ingest → validate → score → monitor",
    )
    assert rows[2][3] == "validate → score → monitor"


def test_a_long_error_is_cut_to_a_short_reason():
    rows = [row("2024-01-01", {"ingest": "failed"}, {"ingest": "x" * 500 + "\nmore"})]
    (day,) = plan_backfill(["2024-01-01"], rows, "2024-01-01", "2024-01-01", "failed")
    assert day.run and day.why == "last ingest failed: " + "x" * 79 + "…"


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown backfill policy 'latest'"):
        plan_backfill(LANDED, ROWS, "2024-01-01", "2024-01-08", "latest")


def test_a_reversed_range_is_refused():
    with pytest.raises(ValueError, match="reversed"):
        plan_backfill(LANDED, ROWS, "2024-01-08", "2024-01-01", "missing")


def test_a_malformed_day_is_refused():
    with pytest.raises(ValueError, match="not a day"):
        plan_backfill(LANDED, ROWS, "2024-13-01", "2024-01-08", "missing")


def test_a_one_day_range_plans_that_day():
    assert to_run(plan_backfill(LANDED, ROWS, "2024-01-02", "2024-01-02", "missing")) == [
        "2024-01-02"
    ]


def test_a_quarantine_replay_does_not_make_a_complete_day_rerun():
    """A replay is a repair of silver after the day ran; rerunning the day would validate
    it again and undo it, so no policy but `all` reruns a day for its replay's outcome."""
    for status in ("succeeded", "failed"):
        stages = DONE | {"replay": status}
        rows = [row("2024-01-01", stages, {"replay": "x"} if status == "failed" else {})]
        for policy in ("missing", "failed"):
            [day] = plan_backfill(["2024-01-01"], rows, "2024-01-01", "2024-01-01", policy)
            assert (day.run, day.why) == (False, "already succeeded")


def test_a_day_relanded_since_its_ingest_reruns_from_ingest():
    relanded = {"2024-01-01", "2024-01-03"}
    missing = {day.ds: day for day in plan("missing", relanded=relanded)}
    assert missing["2024-01-01"] == PlannedDay("2024-01-01", True, RELANDED, PIPELINE_STAGES)
    assert missing["2024-01-03"].stages == PIPELINE_STAGES  # not from validate: new files
    assert missing["2024-01-03"].why.endswith(f"; {RELANDED}")
    failed = {day.ds: day for day in plan("failed", relanded=relanded)}
    assert not failed["2024-01-01"].run  # re-landed is no failure
    assert failed["2024-01-03"].stages == PIPELINE_STAGES


def test_the_landing_changed_when_a_file_is_added_removed_or_resized():
    ingested = [{"path": "a.csv", "size": 10, "sha256": "x"}, {"path": "b.csv", "size": 5}]
    assert not landing_changed([("a.csv", 10), ("b.csv", 5)], ingested)
    assert landing_changed([("a.csv", 10)], ingested)
    assert landing_changed([("a.csv", 10), ("b.csv", 5), ("c.csv", 1)], ingested)
    assert landing_changed([("a.csv", 11), ("b.csv", 5)], ingested)
