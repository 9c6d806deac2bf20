"""Quarantine replay: corrected rows validated as `validate` does move to silver exactly once,
with their lineage; the rest stay; reruns and a crash between the two commits converge, and
every row of the day stays accounted for."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets import adult, get_dataset
from tasks.accounting import count_rows
from tasks.lake import Lake
from tasks.ledger import LedgerEntry, day_status, read_ledger, record_entry
from tasks.quarantine import (
    ReplayError,
    plan_replay,
    quarantined_rows,
    read_fixes,
    replay_fixes,
    rescoring_pending,
    validation_passes_after_replay,
)
from tasks.validation import commit_validated, stage_validated

ADULT = get_dataset("adult")
DS = "2024-01-05"
# Lines of the shipped wrong-types file (data row n is line n + 1) and what is wrong there.
AGE_FORTY, HOURS_ABC, AGE_150, RACE_EMPTY = 2, 3, 5, 14


@pytest.fixture
def day(validated_day) -> tuple[Lake, int]:
    """Day DS of the shipped bad files: 10 rejected lines, 12 quarantined rows."""
    return validated_day([(f.filename, f.text) for f in adult._bad_files()], DS)


def row_ids(lake: Lake) -> dict[int, str]:
    """Quarantined row id by line of the wrong-types file."""
    rows = quarantined_rows(lake, ADULT, DS)
    return dict(zip(rows["_line"], rows["_row_id"], strict=True))


def fixes_file(tmp_path, rows: list[dict], name: str = "fixes.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return read_fixes(path)


def silver(lake: Lake) -> pd.DataFrame:
    return lake.read("silver", "adult", where={"ds": DS}).to_pandas()


def quarantine_ids(lake: Lake) -> set[str]:
    return set(quarantined_rows(lake, ADULT, DS)["_row_id"])


def assert_accounted(lake: Lake, landed: int) -> None:
    account = count_rows.fn(lake, "adult", DS, landed, None)  # raises on a duplicated row
    assert account.landed == account.bronze + account.rejects
    assert account.bronze == account.silver + account.quarantine


def test_quarantined_rows_show_each_row_its_failed_checks_and_its_values(day):
    lake, _ = day
    rows = quarantined_rows(lake, ADULT, DS)
    assert len(rows) == adult.WRONG_TYPE_BAD_ROWS
    assert list(rows.columns) == ["_row_id", "_source", "_line", "_failed_checks", *ADULT.columns]
    assert rows["_line"].is_monotonic_increasing
    first = rows.iloc[0]
    assert first["_line"] == AGE_FORTY and first["age"] == "forty"
    assert first["_source"].endswith(adult.WRONG_TYPES_FILE)
    assert "age: not a valid integer" in first["_failed_checks"]
    assert quarantined_rows(lake, ADULT, "2024-01-06").empty


def test_fixes_are_read_from_csv_json_lines_and_parquet_alike(tmp_path):
    rows = [
        {"_row_id": "a", "age": "40", "sex": None},
        {"_row_id": "b", "age": None, "sex": "Male"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "fixes.parquet")
    (tmp_path / "fixes.jsonl").write_text(
        "\n".join(
            json.dumps(row | {"_source": "ignored", "age": 40 if row["age"] else None})
            for row in rows
        )
    )
    csv = fixes_file(tmp_path, rows).rows
    assert csv.to_dict("records") == [
        {"_row_id": "a", "age": "40", "sex": None},
        {"_row_id": "b", "age": None, "sex": "Male"},
    ]
    for name in ("fixes.parquet", "fixes.jsonl"):
        fixes = read_fixes(tmp_path / name)
        assert fixes.rows.to_dict("records") == csv.to_dict("records"), name
        assert fixes.name == name and len(fixes.sha256) == 64


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("f.csv", "age\n40\n", "line 2: no _row_id"),
        ("f.csv", "_row_id,age\na,40\na,41\n", "rows fixed more than once: a"),
        ("f.csv", "_row_id,age\na,40,extra\n", "1 line\\(s\\) do not parse: line 2"),
        ("f.csv", "_row_id,age\n", "no fixes in the file"),
        ("f.xlsx", "x", "fixes are read from .csv, .jsonl or .parquet"),
    ],
)
def test_unusable_fixes_files_are_refused_clearly(tmp_path, name, text, error):
    (tmp_path / name).write_text(text)
    with pytest.raises(ReplayError, match=error):
        read_fixes(tmp_path / name)


def test_passing_fixes_move_to_silver_once_with_their_lineage(tmp_path, day):
    lake, landed = day
    ids = row_ids(lake)
    before = lake.read("quarantine", "adult", where={"ds": DS}).to_pandas().set_index("_row_id")
    fixes = fixes_file(
        tmp_path,
        [
            {"_row_id": ids[AGE_FORTY], "age": "40"},
            {"_row_id": ids[HOURS_ABC], "hours_per_week": " 45 "},
            {"_row_id": ids[AGE_150], "age": "151"},
            {"_row_id": "0123456789abcdef", "age": "30"},
        ],
    )
    outcome = replay_fixes(lake, ADULT, DS, fixes, run_id="replay-1", who="ana")

    assert outcome.replayed == (ids[AGE_FORTY], ids[HOURS_ABC]) and outcome.resumed == ()
    assert list(outcome.still_failing) == [ids[AGE_150]]
    assert outcome.still_failing[ids[AGE_150]][0].startswith("age: less_than_or_equal_to")
    assert outcome.unknown == ("0123456789abcdef",) and outcome.already_replayed == ()

    moved = silver(lake).set_index("_row_id").loc[[ids[AGE_FORTY], ids[HOURS_ABC]]]
    assert moved["age"].tolist()[0] == 40 and moved["hours_per_week"].tolist()[1] == 45
    for column in ("_source", "_line", "_ingested_at", "ds"):
        assert moved[column].tolist() == before.loc[moved.index, column].tolist(), column
    assert (moved["_run_id"] == "replay-1").all()
    assert moved["workclass"].tolist() == before.loc[moved.index, "workclass"].tolist()
    assert silver(lake)["_row_id"].is_unique

    left = quarantined_rows(lake, ADULT, DS).set_index("_row_id")
    assert len(left) == adult.WRONG_TYPE_BAD_ROWS - 2
    assert left.loc[ids[AGE_150], "age"] == "150", "a still failing row stays as landed"
    assert left.loc[ids[AGE_150], "_failed_checks"] == list(
        before.loc[ids[AGE_150], "_failed_checks"]
    )
    assert_accounted(lake, landed)

    [entry] = read_ledger(lake, "adult", DS).query("stage == 'replay'").to_dict("records")
    assert (entry["status"], entry["run_id"]) == ("succeeded", "replay-1")
    assert (entry["rows_in"], entry["rows_out"], entry["rows_diverted"]) == (4, 2, 1)
    details = entry["details"]
    assert details["who"] == "ana"
    assert details["fixes"] == {"file": "fixes.csv", "sha256": fixes.sha256}
    assert details["replayed"] == [ids[AGE_FORTY], ids[HOURS_ABC]]
    assert details["still_failing"] == outcome.still_failing
    assert details["unknown"] == ["0123456789abcdef"]
    assert set(entry["delta_versions"]) == {"silver", "quarantine"}

    status = day_status(lake, "adult")[0]
    assert (status["silver"], status["quarantined"]) == (len(silver(lake)), len(left))


def test_replaying_the_same_fixes_again_writes_nothing(tmp_path, day):
    lake, landed = day
    ids = row_ids(lake)
    fixes = fixes_file(
        tmp_path, [{"_row_id": ids[AGE_FORTY], "age": "40"}, {"_row_id": ids[AGE_150]}]
    )
    replay_fixes(lake, ADULT, DS, fixes, run_id="replay-1", who="ana")
    versions = {table: lake.version(table, "adult") for table in ("silver", "quarantine")}

    again = replay_fixes(lake, ADULT, DS, fixes, run_id="replay-2", who="ana")
    assert again.replayed == again.resumed == ()
    assert again.already_replayed == (ids[AGE_FORTY],)
    assert list(again.still_failing) == [ids[AGE_150]]
    assert {table: lake.version(table, "adult") for table in versions} == versions
    assert_accounted(lake, landed)


def test_a_replay_cut_short_between_silver_and_quarantine_converges_when_rerun(
    tmp_path, day, monkeypatch
):
    lake, landed = day
    ids = row_ids(lake)
    fixes = fixes_file(
        tmp_path,
        [{"_row_id": ids[AGE_FORTY], "age": "40"}, {"_row_id": ids[RACE_EMPTY], "race": "White"}],
    )
    delete = Lake.delete_rows

    def crash_once(self, *args, **kwargs):
        monkeypatch.setattr(Lake, "delete_rows", delete)
        raise OSError("connection reset")

    monkeypatch.setattr(Lake, "delete_rows", crash_once)
    with pytest.raises(OSError, match="connection reset"):
        replay_fixes(lake, ADULT, DS, fixes, run_id="replay-1", who="ana")
    both = set(silver(lake)["_row_id"]) & quarantine_ids(lake)
    assert both == {ids[AGE_FORTY], ids[RACE_EMPTY]}, "in silver, not yet out of quarantine"
    failed = read_ledger(lake, "adult", DS).query("stage == 'replay'").iloc[-1]
    assert failed["status"] == "failed" and "connection reset" in failed["error"]

    rerun = replay_fixes(lake, ADULT, DS, fixes, run_id="replay-2", who="ana")
    assert rerun.replayed == () and set(rerun.resumed) == both
    assert not set(silver(lake)["_row_id"]) & quarantine_ids(lake)
    assert silver(lake)["_row_id"].is_unique
    assert_accounted(lake, landed)
    status = day_status(lake, "adult")[0]
    assert (status["silver"], status["quarantined"]) == (
        len(silver(lake)),
        len(quarantine_ids(lake)),
    )


def test_a_plan_that_was_appended_is_not_appended_again(tmp_path, day):
    """The silver append is keyed by the quarantine state read and the rows moved: the same
    replay retried (here: its plan applied twice) does not duplicate rows."""
    from tasks.quarantine import _move_to_silver

    lake, landed = day
    fixes = fixes_file(tmp_path, [{"_row_id": row_ids(lake)[AGE_FORTY], "age": "40"}])
    plan = plan_replay(lake, ADULT, DS, fixes)
    assert set(_move_to_silver(lake, ADULT, DS, plan, "r")) == {"silver", "quarantine"}
    assert _move_to_silver(lake, ADULT, DS, plan, "r") == {}, "nothing written again"
    assert silver(lake)["_row_id"].is_unique
    assert_accounted(lake, landed)


def test_only_unknown_rows_is_a_clear_error_and_nothing_is_written_or_recorded(tmp_path, day):
    lake, _ = day
    versions = {table: lake.version(table, "adult") for table in ("silver", "quarantine")}
    ledger = len(read_ledger(lake, "adult"))
    fixes = fixes_file(tmp_path, [{"_row_id": "0123456789abcdef", "age": "40"}])
    with pytest.raises(ReplayError, match="none of the 1 fixed rows of fixes.csv is a row"):
        replay_fixes(lake, ADULT, DS, fixes, run_id="replay-1", who="ana")
    bad_column = fixes_file(tmp_path, [{"_row_id": row_ids(lake)[AGE_FORTY], "agee": "40"}])
    with pytest.raises(ReplayError, match=r"columns \['agee'\] are not columns of adult"):
        replay_fixes(lake, ADULT, DS, bad_column, run_id="replay-1", who="ana")
    assert {table: lake.version(table, "adult") for table in versions} == versions
    assert len(read_ledger(lake, "adult")) == ledger


def test_a_plan_writes_nothing(tmp_path, day):
    lake, _ = day
    fixes = fixes_file(tmp_path, [{"_row_id": row_ids(lake)[AGE_FORTY], "age": "40"}])
    versions = {table: lake.version(table, "adult") for table in ("silver", "quarantine")}
    plan = plan_replay(lake, ADULT, DS, fixes)
    assert plan.outcome.replayed == (row_ids(lake)[AGE_FORTY],) and len(plan.silver) == 1
    assert {table: lake.version(table, "adult") for table in versions} == versions


def test_a_fix_giving_the_column_a_file_lacked_answers_that_issue(tmp_path, validated_day):
    shipped = next(f for f in adult._bad_files() if f.filename == adult.WRONG_TYPES_FILE)
    frame = pd.read_csv(pd.io.common.StringIO(shipped.text), dtype=str, keep_default_na=False)
    good = frame.iloc[[2]].drop(columns="race")  # a valid row, from a file without `race`
    lake, landed = validated_day([("no-race.csv", good.to_csv(index=False))], DS)
    [row] = quarantined_rows(lake, ADULT, DS).to_dict("records")
    assert "file: missing column race" in row["_failed_checks"]

    fixes = fixes_file(tmp_path, [{"_row_id": row["_row_id"], "race": "White"}])
    outcome = replay_fixes(lake, ADULT, DS, fixes, run_id="replay-1", who="ana")
    assert outcome.replayed == (row["_row_id"],)
    assert silver(lake)["race"].tolist() == ["White"]
    assert_accounted(lake, landed)


def test_rescoring_is_pending_from_a_replay_that_moved_rows_until_the_pipeline_succeeds(
    tmp_path, day
):
    lake, _ = day
    assert not rescoring_pending(lake, "adult", DS)
    fixes = fixes_file(tmp_path, [{"_row_id": row_ids(lake)[AGE_FORTY], "age": "40"}])
    replay_fixes(lake, ADULT, DS, fixes, run_id="replay-1", who="ana")
    assert rescoring_pending(lake, "adult", DS)
    record_entry(lake, LedgerEntry("adult", DS, "pipeline", "p1", status="failed"))
    assert rescoring_pending(lake, "adult", DS)
    record_entry(lake, LedgerEntry("adult", DS, "pipeline", "p2"))
    assert not rescoring_pending(lake, "adult", DS)
    replay_fixes(lake, ADULT, DS, fixes, run_id="replay-2", who="ana")  # moves nothing
    assert not rescoring_pending(lake, "adult", DS)


def test_a_row_leaves_quarantine_only_once_it_is_in_silver(tmp_path, day):
    """A stale replay (its rows appended once, then the day validated again, which put them
    back in quarantine) appends nothing and so deletes nothing: no row is lost."""
    from tasks.quarantine import _move_to_silver

    lake, landed = day
    row_id = row_ids(lake)[AGE_FORTY]
    plan = plan_replay(lake, ADULT, DS, fixes_file(tmp_path, [{"_row_id": row_id, "age": "40"}]))
    _move_to_silver(lake, ADULT, DS, plan, "replay-1")
    commit_validated.fn(lake, ADULT, DS, stage_validated.fn(lake, ADULT, DS, "v2"), "v2")
    with pytest.raises(RuntimeError, match="1 replayed rows are not in silver after the append"):
        _move_to_silver(lake, ADULT, DS, plan, "replay-1")
    assert row_id in quarantine_ids(lake)
    assert_accounted(lake, landed)


def test_a_day_failed_on_the_quarantine_limit_passes_validation_once_replays_bring_it_under(
    tmp_path, day
):
    lake, landed = day
    record_entry(  # 12 of 35 rows quarantined: over a 20% limit, the day's validate failed
        lake,
        LedgerEntry(
            "adult", DS, "validate", "v2", status="failed", error="QuarantineLimitExceeded: 34%"
        ),
    )
    ids = row_ids(lake)
    one_fix = fixes_file(tmp_path, [{"_row_id": ids[AGE_FORTY], "age": "40"}], "one.csv")
    replay_fixes(lake, ADULT, DS, one_fix, run_id="replay-1")
    assert not validation_passes_after_replay(lake, "adult", DS, 0.2, "replay-1")  # 11 of 35

    three_fixes = fixes_file(
        tmp_path,
        [
            {"_row_id": ids[HOURS_ABC], "hours_per_week": "45"},
            {"_row_id": ids[AGE_150], "age": "50"},
            {"_row_id": ids[RACE_EMPTY], "race": "White"},
        ],
        "more.csv",
    )
    replay_fixes(lake, ADULT, DS, three_fixes, run_id="replay-2")
    assert validation_passes_after_replay(lake, "adult", DS, 0.25, "replay-2")  # 8 of 35
    validated = read_ledger(lake, "adult", DS).query("stage == 'validate'").iloc[-1]
    assert validated["status"] == "succeeded" and validated["details"]["passed_after_replay"]
    (status,) = day_status(lake, "adult")
    assert (status["silver"], status["quarantined"]) == (27, 8)
    assert not validation_passes_after_replay(lake, "adult", DS, 0.25, "replay-3")  # passed
    assert_accounted(lake, landed)
