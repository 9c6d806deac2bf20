"""`tidewater quarantine [show]` and `tidewater quarantine replay` on a lake on disk, in
process (the rescoring, which needs Prefect and Dask, is replaced by a recorder here;
tests/integration/test_quarantine_cli.py runs it for real)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from datasets import adult
from deployments import quarantine_cli
from deployments.cli import app

DS = "2024-01-05"


@pytest.fixture
def cli(home, validated_day, monkeypatch, prefect_api):
    """Runs `tidewater ARGS` with this test's home holding day DS of the shipped bad files;
    a rescoring records the day and a succeeded pipeline run (as the pipeline would)."""
    from tasks.ledger import LedgerEntry, record_entry

    lake, _ = validated_day([(f.filename, f.text) for f in adult._bad_files()], DS)
    rescored: list[str] = []

    def rescore(dataset: str, ds: str, settings, verbose: bool) -> bool:
        rescored.append(ds)
        record_entry(lake, LedgerEntry(dataset, ds, "pipeline", f"rescore-{len(rescored)}"))
        return True

    monkeypatch.setattr(quarantine_cli, "_rescore", rescore)

    def run(*args: str):
        environment = {"TIDEWATER_HOME": str(home), "PREFECT_API_URL": prefect_api}
        return CliRunner().invoke(app, list(args), env=environment)

    run.rescored = rescored
    return run


def quarantined(cli) -> list[dict]:
    shown = cli("quarantine", "adult", "--ds", DS, "--json", "--limit", "0")
    assert shown.exit_code == 0, shown.output
    return [json.loads(line) for line in shown.stdout.splitlines()]


def test_quarantine_lists_the_days_rows_as_show_does(cli):
    bare = cli("quarantine", "adult", "--ds", DS)
    assert bare.exit_code == 0, bare.output
    assert "part-9002-wrong-types.csv:2" in bare.stdout and "age='forty'" in bare.stdout
    assert cli("quarantine", "show", "adult", "--ds", DS).stdout == bare.stdout
    limited = cli("quarantine", "adult", "--ds", DS, "--limit", "3")
    assert "3 of 12 quarantined rows shown; --limit 0 shows all" in limited.stderr
    assert (
        "no quarantined rows of adult ds=2024-01-06"
        in cli("quarantine", "adult", "--ds", "2024-01-06").stdout
    )
    listed = cli("quarantine", "--help")
    assert listed.exit_code == 0 and "show" in listed.stdout and "replay" in listed.stdout
    assert cli("quarantine", "nosuch", "--ds", DS).exit_code == 2


def test_replay_moves_the_fixed_rows_rescoring_once_and_a_rerun_does_nothing(cli, tmp_path):
    forty = next(row for row in quarantined(cli) if row["age"] == "forty")
    fixes = tmp_path / "fixes.jsonl"  # a line of `--json`, edited
    fixes.write_text(json.dumps(forty | {"age": "40"}) + "\n")

    dry = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(fixes), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would replay 1 row of adult ds=2024-01-05" in dry.stdout
    assert len(quarantined(cli)) == 12 and cli.rescored == []

    replayed = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(fixes))
    assert replayed.exit_code == 0, replayed.output
    assert "replay 1 row of adult ds=2024-01-05 into silver" in replayed.stdout
    assert forty["_row_id"] not in {row["_row_id"] for row in quarantined(cli)}
    assert cli.rescored == [DS]

    again = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(fixes))
    assert again.exit_code == 0, again.output
    assert "nothing to replay: 1 already in silver" in again.stdout
    assert cli.rescored == [DS], "nothing moved since the day was scored"


def test_replay_exits_1_while_a_row_still_fails_and_2_when_no_row_is_known(cli, tmp_path):
    rows = {row["age"]: row["_row_id"] for row in quarantined(cli)}
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"_row_id,age\n{rows['150']},151\n{rows['forty']},40\n")
    replayed = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(fixes))
    assert replayed.exit_code == 1, replayed.output
    assert "1 row still fails (stays quarantined)" in replayed.stdout
    assert f"{rows['150']}: age: less_than_or_equal_to(90)" in replayed.stdout

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("_row_id,age\n0123456789abcdef,40\n")
    refused = cli("quarantine", "replay", "adult", "--ds", DS, "--fixes", str(unknown))
    assert refused.exit_code == 2
    assert "none of the 1 fixed rows of unknown.csv is a row of adult" in refused.stderr


def test_replays_of_one_row_at_once_move_it_to_silver_once(
    home, validated_day, prefect_api, tmp_path
):
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from datasets import get_dataset
    from tasks.accounting import count_rows
    from tasks.quarantine import quarantined_rows, read_fixes

    spec = get_dataset("adult")
    lake, landed = validated_day([(f.filename, f.text) for f in adult._bad_files()], DS)
    row = quarantined_rows(lake, spec, DS).query("_line == 2")["_row_id"].iloc[0]  # age forty
    pd.DataFrame([{"_row_id": row, "age": "40"}]).to_csv(tmp_path / "fixes.csv", index=False)
    given = read_fixes(tmp_path / "fixes.csv")
    with ThreadPoolExecutor(4) as pool:
        runs = [
            pool.submit(
                contextvars.copy_context().run, quarantine_cli.replay_alone, lake, spec, DS, given
            )
            for _ in range(4)
        ]
        outcomes = [run.result() for run in runs]
    assert sorted(len(outcome.replayed) for outcome in outcomes) == [0, 0, 0, 1]
    silver = lake.read("silver", "adult", where={"ds": DS}).column("_row_id").to_pylist()
    assert silver.count(row) == 1
    count_rows.fn(lake, "adult", DS, landed, None)  # raises on a duplicated row
