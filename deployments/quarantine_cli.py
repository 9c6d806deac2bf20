"""`tidewater quarantine`: a day's quarantined rows, and replaying corrected ones."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

DayOption = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])]
VALUES_NAMED = ("row", "file")  # checks that name no column: show all of the row's values


class ShowByDefault(TyperGroup):
    """A group whose first argument, when it names none of its commands, is `show`'s:
    `tidewater quarantine adult --ds D` is `tidewater quarantine show adult --ds D`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


quarantine_app = typer.Typer(
    cls=ShowByDefault,
    no_args_is_help=True,
    help="A day's quarantined rows: show them (the default), replay corrected ones.",
)


@quarantine_app.command("show")
def show(
    dataset: str,
    ds: DayOption,
    limit: Annotated[int, typer.Option(min=0, help="rows shown (0: all)")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines: lineage, failed checks, every value")
    ] = False,
) -> None:
    """List DATASET's quarantined rows of day DS: row id, file and line, the checks each
    failed and the values they name. `--json` prints every value, one row per line: edit
    it into a fixes file for `tidewater quarantine replay`."""
    from deployments.cli import _dataset, _day, _settings, console, err
    from flows.resources import lake_of
    from tasks.quarantine import quarantined_rows

    spec, settings = _dataset(dataset), _settings()
    rows = quarantined_rows(lake_of(settings), spec, _day(ds))
    if rows.empty:
        console.print(f"no quarantined rows of {dataset} ds={_day(ds)}")
        return
    shown = rows if limit == 0 else rows.head(limit)
    if as_json:
        for row in shown.to_dict("records"):
            typer.echo(json.dumps(row))
    else:
        console.print(_rows_table(shown, spec.columns, f"{dataset} ds={_day(ds)}: quarantine"))
    if len(shown) < len(rows):
        err.print(f"{len(shown)} of {len(rows)} quarantined rows shown; --limit 0 shows all")


def _rows_table(rows, columns: tuple[str, ...], title: str) -> Table:
    table = Table(title=title)
    for name in ("row id", "file:line", "failed checks", "values"):
        table.add_column(name)
    for row in rows.to_dict("records"):
        table.add_row(
            row["_row_id"],
            escape(f"{str(row['_source']).rsplit('/', 1)[-1]}:{row['_line']}"),
            escape("\n".join(row["_failed_checks"])),
            escape(_named_values(row, columns)),
        )
    return table


def _named_values(row: dict, columns: tuple[str, ...]) -> str:
    """The values of the columns the row's checks name; all its values when a check names
    none (a row-wide check, a file issue)."""
    named = {check.split(":", 1)[0] for check in row["_failed_checks"]}
    shown = [name for name in columns if name in named]
    if not shown or named & set(VALUES_NAMED):
        shown = list(columns)
    return ", ".join(f"{name}={row[name]!r}" for name in shown)


@quarantine_app.command("replay")
def replay(
    dataset: str,
    ds: DayOption,
    fixes: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="corrected rows: .csv, .jsonl, .parquet"),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would happen, change nothing")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Replay corrected rows of DATASET's day DS: the FIXES file names each row by its
    `_row_id` and gives the values to change (as text, as they would land; a column not
    given keeps the quarantined value). Rows that pass validation move to silver and the
    day is scored again; rows that still fail stay quarantined. Exits 1 when a row still
    fails or the rescoring fails, 0 otherwise (also when every row was replayed before)."""
    from deployments.cli import _dataset, _day, _fail, _prefect, _settings, console
    from flows.resources import lake_of
    from tasks.quarantine import ReplayError, plan_replay, read_fixes

    spec, settings, day = _dataset(dataset), _settings(), _day(ds)
    lake = lake_of(settings)
    try:
        given = read_fixes(fixes)
        if dry_run:
            outcome = plan_replay(lake, spec, day, given).outcome
        else:
            with _prefect(settings, verbose):
                outcome = replay_alone(lake, spec, day, given)
    except ReplayError as error:
        raise _fail(str(error), code=2) from None
    except Exception as error:  # noqa: BLE001 - recorded in the ledger, shown as one line
        raise _fail(f"replay failed: {type(error).__name__}: {error}") from None
    _print_outcome(outcome, f"{dataset} ds={day}", dry_run)
    rescored = True
    if dry_run:
        console.print("dry run: nothing was changed")
    else:
        rescored = _score_replayed(dataset, day, settings, lake, verbose)
    if outcome.still_failing or not rescored:
        raise typer.Exit(1)


def replay_alone(lake, spec, day: str, given):
    """Replay `given` fixes of the day, one replay of the dataset at a time across every
    process (a Prefect global concurrency limit): two replays naming the same row at once
    would both move it to silver."""
    from tasks.concurrency import one_at_a_time
    from tasks.quarantine import replay_fixes

    with one_at_a_time(f"tidewater-replay-{spec.name}", timeout_seconds=600):
        return replay_fixes(lake, spec, day, given, run_id=f"replay-{uuid.uuid4()}")


def _score_replayed(dataset: str, day: str, settings, lake, verbose: bool) -> bool:
    """Pass the day's validation when replays brought a day that failed on the quarantine
    limit under it, then score the day again if rows moved since it last ran; whether
    that succeeded (or was not needed)."""
    from deployments.cli import console
    from tasks.quarantine import rescoring_pending, validation_passes_after_replay

    limit = settings.max_quarantine_fraction
    if validation_passes_after_replay(lake, dataset, day, limit, f"replay-{uuid.uuid4()}"):
        console.print(f"{dataset} ds={day} now passes the quarantine limit ({limit:.0%})")
    if rescoring_pending(lake, dataset, day):
        return _rescore(dataset, day, settings, verbose)
    return True


def _print_outcome(outcome, day: str, dry_run: bool) -> None:
    from deployments.cli import console

    would = "would " if dry_run else ""
    if outcome.replayed:
        console.print(f"{would}replay {_rows(outcome.replayed)} of {day} into silver")
    if outcome.resumed:
        console.print(
            f"{would}take {_rows(outcome.resumed)} an interrupted replay had put in silver "
            f"out of quarantine"
        )
    if outcome.already_replayed:
        nothing = "" if outcome.moved or outcome.still_failing else "nothing to replay: "
        console.print(f"{nothing}{len(outcome.already_replayed)} already in silver")
    if outcome.still_failing:
        fail = "fails" if len(outcome.still_failing) == 1 else "fail"
        console.print(f"[red]{_rows(outcome.still_failing)} still {fail}[/] (stays quarantined):")
        for row_id, checks in outcome.still_failing.items():
            console.print(f"  {row_id}: {escape('; '.join(checks))}")
    if outcome.unknown:
        console.print(
            f"[yellow]{len(outcome.unknown)} row ids are not rows of {day}[/]: "
            + ", ".join(outcome.unknown)
        )


def _rows(ids) -> str:
    return f"{len(ids)} row" + ("" if len(ids) == 1 else "s")


def _rescore(dataset: str, ds: str, settings, verbose: bool) -> bool:
    """Score and monitor the day again (its predictions then cover the replayed rows);
    whether it succeeded."""
    from deployments.cli import _cluster, _prefect, _print_status, console, err

    with _prefect(settings, verbose), _cluster(settings) as settings:
        from flows.pipeline import pipeline

        try:
            with console.status(f"scoring {dataset} ds={ds} again"):
                pipeline(dataset, ds, stages=["score", "monitor"])
            rescored = True
        except Exception as error:  # noqa: BLE001 - shown, then the exit code says it
            err.print(f"[red]rescoring ds={ds} failed:[/] {type(error).__name__}: {error}")
            rescored = False
    _print_status(dataset, settings, days=[ds])
    return rescored
