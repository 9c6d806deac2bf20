"""The `tidewater` command line: land data, run days, check status, run the demo."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deployments.quarantine_cli import quarantine_app

app = typer.Typer(help="tidewater: batch ML pipelines from landing zone to drift reports.")
# Piped output (make, CI logs) gets a table wide enough to read instead of 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DateOption = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])]


def _day(value: datetime | date) -> str:
    return value.strftime("%Y-%m-%d")


def _days(start: datetime, count: int) -> list[str]:
    return [_day(start + timedelta(days=i)) for i in range(count)]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _settings(check_storage: bool = True):
    """This process's settings, validated once; with `check_storage`, the store's
    credentials are tried once (a refusal is one line, not a run's retries; credentials in
    a Prefect block are tried by the flows, which have the API). Reports link to `tidewater
    serve`'s reports server when one runs and no reports URL is configured."""
    from flows.resources import check_storage as check_store
    from flows.settings import Settings
    from tasks.storage import StorageAccessDenied, StorageConfigError

    try:
        settings = Settings()
    except ValidationError as error:
        raise _fail(f"invalid TIDEWATER_* settings:\n{error}", code=2) from None
    try:
        if check_storage and not settings.storage_block:
            check_store(settings)
    except (StorageAccessDenied, StorageConfigError) as error:
        raise _fail(str(error), code=2) from None
    if settings.reports_url is None:
        from deployments.services import running_service

        served = running_service(settings.home, "reports")
        if served:
            settings = settings.model_copy(update={"reports_url": served["url"]})
    return settings


def _dataset(name: str):
    from datasets import get_dataset

    try:
        return get_dataset(name)
    except KeyError as error:
        raise _fail(str(error.args[0]), code=2) from None


def _quiet_terminal(verbose: bool) -> None:
    """Flow and task logs go to the Prefect API at INFO; the terminal shows warnings only,
    unless --verbose."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    if not verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    # The local cluster's scheduler lives in this process: its chatter only with --verbose.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose else "warning")
    # MLflow announces its database set-up and warns that a uv environment has no pip
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "ERROR")


class _WithoutTraceback(logging.Formatter):
    """A log formatter's lines, without the traceback of the record's exception."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info, bare.exc_text = None, None
        return self.inner.format(bare)


def _tracebacks_off_the_terminal() -> None:
    """Prefect's terminal logs without tracebacks: a failed run ends with one line per error
    (the command's own summary); the tracebacks stay in the run's logs in the Prefect UI,
    and on the terminal with --verbose."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in [logging.root, *loggers]:
        for handler in getattr(logger, "handlers", []):
            formatter = handler.formatter or logging.Formatter()
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                formatter, _WithoutTraceback
            ):
                handler.setFormatter(_WithoutTraceback(formatter))


@app.callback()
def _before_every_command() -> None:
    # Prefect reads its console log level when it is first imported, which a command's own
    # imports (datasets, flows) may do before it gets to `_prefect`.
    _quiet_terminal(verbose=bool({"-v", "--verbose"} & set(sys.argv[1:])))


@contextmanager
def _prefect(settings, verbose: bool) -> Iterator[str]:
    """One Prefect API for this command and every process it starts, and these settings as
    the process's settings."""
    _quiet_terminal(verbose)
    from deployments.server import ensure_prefect_api
    from flows.settings import use_settings

    with console.status("connecting to the Prefect API"):
        api_url = ensure_prefect_api(settings.home)
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from deployments.api_watchdog import exit_when_api_gone
    from deployments.doctor import check_prefect_api

    if not verbose:
        _tracebacks_off_the_terminal()

    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    reachable = check_prefect_api(api_url, auth_string=auth)
    if reachable.status == "fail":
        raise _fail(f"{reachable.detail}\n{reachable.fix or ''}")
    # Given explicitly, so that no import order decides which API and credential are used.
    overrides = {PREFECT_API_URL: api_url} | ({PREFECT_API_AUTH_STRING: auth} if auth else {})
    gone = API_GONE.format(url=api_url, error="it refuses connections")
    with (
        temporary_settings(overrides),
        use_settings(settings),
        exit_when_api_gone(api_url, gone),
    ):
        yield api_url


@contextmanager
def _cluster(settings) -> Iterator:
    """Settings whose Dask address outlives every flow run of this command: the configured
    scheduler, `tidewater serve`'s cluster, or a local cluster for this command."""
    from flows.resources import cluster_spec_of, dask_address_of
    from flows.settings import use_settings
    from tasks.cluster import scheduler_at

    with scheduler_at(dask_address_of(settings), cluster_spec_of(settings)) as address:
        settings = settings.model_copy(update={"dask_address": address})
        with use_settings(settings):
            yield settings


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )


def _train_first(dataset: str, days: list[str] | None, promote: bool) -> str:
    """Ingest and validate those of `days` not validated yet, then train on them."""
    from flows.ingest import ingest
    from flows.resources import lake_of
    from flows.settings import current_settings
    from flows.train import train
    from flows.validate import validate
    from tasks.ledger import succeeded_days

    settings = current_settings()
    lake = lake_of(settings)
    validated = set(succeeded_days(lake, dataset, "validate"))
    for ds in [ds for ds in days or [] if ds not in validated]:
        with console.status(f"ingesting and validating {dataset} ds={ds}"):
            ingest(dataset, ds)
            validate(dataset, ds)
    _catch_up_labels(dataset, settings, lake)
    with console.status(f"training {dataset}"):
        return train(dataset, days, promote=promote)


def _catch_up_labels(dataset: str, settings, lake) -> None:
    """Ingest the labels feed's days that landed and were never ingested."""
    from flows.labels import ingest_labels
    from flows.resources import store_of
    from tasks.labels import labels_feed
    from tasks.landing import landed_days
    from tasks.ledger import succeeded_days

    feed = landed_days(settings.landing_uri, labels_feed(dataset), store_of(settings))
    ingested = set(succeeded_days(lake, dataset, "labels"))
    for ds in [ds for ds in feed if ds not in ingested]:
        with console.status(f"ingesting {labels_feed(dataset)} ds={ds}"):
            ingest_labels(dataset, ds)


def _run_days(
    dataset: str,
    days: list[str],
    follow_retrains: bool = False,
    stages: tuple[str, ...] | None = None,
) -> list[str]:
    """Run the pipeline (or only `stages` of it) for each day; returns the days that failed
    (with their errors shown). With `follow_retrains`, a day whose monitor requested a
    retrain waits for the retrain run the deployment's trigger starts, so that the next day
    is scored with its outcome."""
    from flows.pipeline import pipeline

    failed = []
    with _progress() as progress:
        bar = progress.add_task(f"pipeline {dataset}", total=len(days))
        for ds in days:
            progress.update(bar, description=f"pipeline {dataset} ds={ds}")
            try:
                result = pipeline(dataset, ds, stages=list(stages) if stages else None)
            except Exception as error:  # noqa: BLE001 - reported, then the next day runs
                failed.append(ds)
                err.print(f"[red]ds={ds} failed:[/] {_why(error)}")
                if _api_gone(error):
                    break  # every later day would fail the same way
                progress.advance(bar)
                continue
            _report_loop(dataset, ds, result, follow_retrains, progress)
            progress.advance(bar)
    return failed


API_GONE = (
    "the Prefect API at {url} is gone ({error}); start it again (`tidewater serve`, or "
    "your server), then rerun: what was committed stays, the rest reruns"
)


def _api_gone(error: BaseException) -> BaseException | None:
    """The connection error to the Prefect API behind `error`, if that is its cause."""
    import httpx

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _why(error: BaseException) -> str:
    """`error` in one line; when the Prefect API went away, that, plainly."""
    gone = _api_gone(error)
    if gone is not None:
        from prefect.settings import PREFECT_API_URL

        return API_GONE.format(url=PREFECT_API_URL.value(), error=f"{type(gone).__name__}: {gone}")
    return f"{type(error).__name__}: {error}"


def _report_loop(dataset: str, ds: str, result: dict, follow: bool, progress: Progress) -> None:
    """One line per step of the retraining loop the day took: a retrain requested (and,
    when following, the triggered run's outcome), a shadow day, a promotion."""
    shadowed = result.get("shadow")
    if shadowed:
        decision = {"promote": "[bold green]promoted to champion[/]", "retire": "[red]retired[/]"}
        progress.console.print(
            f"ds={ds}: challenger {shadowed['challenger']} in shadow: "
            f"{decision.get(shadowed['decision'], 'shadow continues')} "
            f"({'; '.join(shadowed['reasons'])})"
        )
    requested = result.get("retrain_requested")
    if not requested:
        return
    window = f"{requested['days'][0]}..{requested['days'][-1]}"
    progress.console.print(
        f"ds={ds}: [bold]retrain requested[/] on {window} (event {requested['event']})"
    )
    if follow and requested["event"]:
        _follow_retrain(dataset, requested, progress)


def _follow_retrain(dataset: str, requested: dict, progress: Progress) -> None:
    from deployments.runs import wait_for_triggered_run
    from flows.resources import lake_of
    from flows.settings import current_settings
    from tasks.ledger import last_succeeded

    progress.console.print("  waiting for the retrain deployment's automation and the worker")
    try:
        run = wait_for_triggered_run(
            f"retrain/{dataset}-retrain",
            requested["event"],
            datetime.fromisoformat(requested["requested_at"]),
        )
    except TimeoutError as error:
        err.print(f"  [red]{error}[/]")
        return
    latency = f"{run.started_after_seconds:.1f} s" if run.started_after_seconds else "?"
    progress.console.print(
        f"  automation → flow run {run.name} started {latency} after the request, "
        f"ran {run.ran_seconds or 0:.1f} s: {run.state}"
    )
    recorded = last_succeeded(
        lake_of(current_settings()), dataset, requested["days"][-1], "retrain"
    )
    outcome = (recorded or {}).get("details", {}).get("outcome", {})
    if outcome.get("challenger"):
        progress.console.print(f"  gate passed: [bold]{outcome['challenger']}[/] is the challenger")
    elif outcome:
        progress.console.print(f"  gate rejected the candidate: {'; '.join(outcome['reasons'])}")


@app.command()
def land(
    dataset: str,
    start: DateOption,
    days: Annotated[int, typer.Option(min=1, max=3660)] = 1,
    drift_from: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    bad_files: Annotated[
        bool, typer.Option(help="include the malformed and wrong-type files")
    ] = True,
    seed: int = 0,
) -> None:
    """Write DAYS daily landing partitions of DATASET's real data, from START."""
    from flows.resources import store_of

    spec, settings = _dataset(dataset), _settings()
    if spec.land is None:
        raise _fail(
            f"{dataset} declares no loader of its own data: its upstream puts files under "
            f"{settings.landing_uri}/{dataset}/ds=YYYY-MM-DD/",
            code=2,
        )
    with console.status(f"landing {days} days of {dataset}"):
        written = spec.land(
            settings.landing_uri,
            start.date(),
            days,
            drift_from=drift_from.date() if drift_from else None,
            bad_files=bad_files,
            seed=seed,
            storage_options=store_of(settings).fsspec_options(settings.landing_uri),
        )
    console.print(f"landed {len(written)} files under {settings.landing_uri}/{dataset}/")


@app.command()
def run(
    dataset: str,
    ds: DateOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the daily pipeline of DATASET for one day."""
    _dataset(dataset)
    settings = _settings()
    _fail_unless_landed(dataset, _day(ds), settings)
    with _prefect(settings, verbose), _cluster(settings) as settings:
        failed = _run_days(dataset, [_day(ds)])
    _print_status(dataset, settings, days=[_day(ds)])
    if failed:
        raise typer.Exit(1)


def _fail_unless_landed(dataset: str, ds: str, settings) -> None:
    """A day with nothing landed fails at once, recorded in the ledger as a failed ingest,
    before any server or cluster starts."""
    from flows.resources import lake_of, store_of
    from tasks.landing import landed_days
    from tasks.ledger import LedgerEntry, record_entry

    if ds in landed_days(settings.landing_uri, dataset, store_of(settings)):
        return
    folder = f"{settings.landing_uri.rstrip('/')}/{dataset}/ds={ds}/"
    error = f"nothing landed for {dataset} ds={ds} (no {folder})"
    record_entry(
        lake_of(settings),
        LedgerEntry(
            dataset=dataset,
            ds=ds,
            stage="ingest",
            run_id=f"cli-{uuid.uuid4()}",
            status="failed",
            error=f"NothingLanded: {error}",
        ),
    )
    raise _fail(error)


class BackfillPolicy(StrEnum):
    missing = "missing"
    failed = "failed"
    all = "all"


@app.command()
def backfill(
    dataset: str,
    start: DateOption,
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])],
    policy: Annotated[BackfillPolicy, typer.Option()] = BackfillPolicy.missing,
    stages: Annotated[
        list[str] | None,
        typer.Option(help="rerun these stages (and what depends on them), e.g. score,monitor"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan, run nothing")] = False,
    max_parallel: Annotated[int, typer.Option(min=1, help="days run at once")] = 2,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="run in this process, not on the work pool")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rerun the daily pipeline of DATASET for the days from START to END that POLICY picks,
    planned from the ledger and the landing zone: `missing` (landed, never completed),
    `failed` (the latest attempt of a stage did not succeed) or `all` (every landed day).
    A day reruns from its first stage not done (what succeeded is reused; `all` and
    --stages say otherwise). Days with nothing landed are listed, not run. The days run as
    flow runs of the daily deployment on the work pool (tagged backfill:ID), or in this
    process with --local, MAX_PARALLEL at once; exits 1 if a day failed."""
    from flows.resources import lake_of, store_of
    from tasks.backfill import plan_backfill
    from tasks.landing import landed_days
    from tasks.ledger import day_status

    _dataset(dataset)
    settings = _settings()
    chosen = [name.strip() for text in stages or [] for name in text.split(",") if name.strip()]
    landed = landed_days(settings.landing_uri, dataset, store_of(settings))
    in_range = [ds for ds in landed if _day(start) <= ds <= _day(end)]
    try:
        plan = plan_backfill(
            landed,
            day_status(lake_of(settings), dataset),
            _day(start),
            _day(end),
            policy.value,
            newest_first,
            stages=chosen or None,
            relanded=_relanded_days(dataset, in_range, settings),
        )
    except ValueError as error:
        raise _fail(str(error), code=2) from None
    _print_plan(plan, f"backfill of {dataset} {_day(start)}..{_day(end)} ({policy.value})")
    planned = [day for day in plan if day.run]
    if dry_run or not planned:
        console.print(
            f"{len(planned)} of {len(plan)} days to run" + (" (dry run)" if dry_run else "")
        )
        return
    from deployments.backfill import Backfill, DayRun

    run = Backfill(
        dataset,
        _day(start),
        _day(end),
        policy.value,
        "local" if local else "deployment",
        max_parallel,
        [DayRun(day.ds, day.stages) for day in planned],
    )
    with _prefect(settings, verbose):
        if local:
            with _cluster(settings) as settings:
                _run_backfill(run, settings)
        else:
            _run_backfill(run, settings)
    _print_status(dataset, settings, days=[day.ds for day in planned])
    if run.failed():
        for day in run.failed():
            err.print(f"[red]{day.ds} failed:[/] {day.error}")
        raise _fail(f"{len(run.failed())} of {len(planned)} days failed (backfill {run.id})")


def _relanded_days(dataset: str, days: list[str], settings) -> set[str]:
    """Those of `days` whose landed files (names, sizes) differ from their latest ingest's."""
    from flows.resources import lake_of, store_of
    from tasks.backfill import landing_changed
    from tasks.landing import list_landed_files
    from tasks.ledger import latest_runs

    latest = latest_runs(lake_of(settings), dataset)
    if latest.empty:
        return set()
    ingests = latest[latest["stage"] == "ingest"].set_index("ds")["files"].to_dict()
    changed = set()
    for ds in [ds for ds in days if ingests.get(ds)]:
        try:
            files, _ = list_landed_files(settings.landing_uri, dataset, ds, store_of(settings))
        except FileNotFoundError:  # a folder with no data file left
            files = []
        if landing_changed([(file.uri, file.size) for file in files], ingests[ds]):
            changed.add(ds)
    return changed


def _print_plan(plan, title: str) -> None:
    from tasks.backfill import plan_table_rows

    table = Table(title=title)
    for name in ("ds", "plan", "why", "runs"):
        table.add_column(name)
    for row in plan_table_rows(plan):
        table.add_row(*row)
    console.print(table)


def _run_backfill(run, settings) -> None:
    """Refuse an overlap, run the days (the work pool's or this process's), show progress,
    print the summary and publish it as an artifact."""
    from deployments.backfill import BackfillOverlaps, InProcessDays, run_backfill, start_backfill
    from flows.resources import lake_of, registry_of
    from reports import artifact_key, backfill_markdown, publish_markdown
    from tasks.concurrency import ensure_scoring_limits

    lake = lake_of(settings)
    days = InProcessDays(run) if run.mode == "local" else _deployment_days(run, settings, lake)
    ensure_scoring_limits(settings.scoring_slots)
    try:
        start_backfill(lake, run)
    except BackfillOverlaps as error:
        raise _fail(str(error)) from None
    console.print(f"{run.describe()}: {len(run.days)} days, {run.max_parallel} at once")
    if run.mode == "deployment":
        console.print(f"flow runs tagged [bold]{run.tag}[/] (filter on it in the Prefect UI)")
    began = time.monotonic()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} days"),
        TimeElapsedColumn(),
        console=console,
    )

    def show(state) -> None:
        counts = state.counts()
        rows = sum(day.rows or 0 for day in state.days if day.state == "succeeded")
        rate = rows / max(time.monotonic() - began, 1e-9)
        progress.update(
            bar,
            completed=counts["succeeded"] + counts["failed"],
            description=(
                f"backfill {state.id}: {counts['succeeded']} done, {counts['running']} running, "
                f"{counts['failed']} failed, {counts['queued']} queued · {rate:,.0f} rows/s"
            ),
        )

    untrained = registry_of(settings).alias(run.dataset, "champion") is None
    if untrained:
        console.print(f"no champion of {run.dataset} yet: {run.days[0].ds} trains it, alone")
    with progress:
        bar = progress.add_task(f"backfill {run.id}", total=len(run.days))
        try:
            run_backfill(run, lake, days, show, first_alone=untrained)
        except KeyboardInterrupt:
            left = days.close()
            still = f"; still running on the workers: {', '.join(left)}" if left else ""
            err.print(f"backfill {run.id} interrupted{still}")
            raise typer.Exit(130) from None
    console.print(_backfill_table(run, time.monotonic() - began))
    publish_markdown(
        backfill_markdown(
            run.describe(),
            "failed" if run.failed() else "succeeded",
            [asdict(day) for day in run.days],
        ),
        key=artifact_key(f"backfill-{run.dataset}-{run.id}"),
        description=f"Backfill {run.id} of {run.dataset} {run.start}..{run.end}",
    )


def _deployment_days(run, settings, lake):
    """Days on lanes of the dataset's backfill deployment (the deployments are applied
    first: idempotent, and they then take this version's parameters); fails at once when
    no worker polls the work pool."""
    from prefect.settings import PREFECT_API_URL

    from deployments.backfill import LaneDays
    from deployments.services import online_workers

    name = f"backfill-lane/{run.dataset}-backfill"
    with console.status("applying the deployments"):
        _apply_to_current_api(settings)
    if not online_workers(settings.work_pool, PREFECT_API_URL.value())():
        raise _fail(
            f"no worker polls the work pool {settings.work_pool!r} to run {name}: start one "
            "with `tidewater serve`, or run the backfill in this process with --local"
        )
    return LaneDays(run, lake, name)


def _backfill_table(run, seconds: float) -> Table:
    table = Table(title=f"backfill {run.id} of {run.dataset}: {seconds:.0f} s")
    for name in ("ds", "outcome", "stages", "flow run", "rows", "seconds", "error"):
        table.add_column(name, justify="right" if name in ("rows", "seconds") else "left")
    colours = {"succeeded": "green", "failed": "red"}
    for day in run.days:
        table.add_row(
            day.ds,
            f"[{colours.get(day.state, 'white')}]{day.state}[/]"
            + (" (adopted)" if day.adopted else ""),
            " → ".join(day.stages),
            day.flow_run or "-",
            _count(day.rows),
            "-" if day.seconds is None else f"{day.seconds:.1f}",
            (day.error or "").split("\n", 1)[0][:80],
        )
    return table


@app.command()
def repair(
    dataset: str,
    ds: DateOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rerun, in this process, only the stages of one day of DATASET whose latest run did
    not succeed or that never ran, and the stages after them (which read what they write);
    what succeeded is reused. Exits 1 if the repair fails."""
    from flows.resources import lake_of
    from tasks.backfill import repair_stages
    from tasks.ledger import day_status

    _dataset(dataset)
    settings = _settings()
    day = _day(ds)
    _fail_unless_landed(dataset, day, settings)
    row = next((r for r in day_status(lake_of(settings), dataset) if r["ds"] == day), None)
    stages = repair_stages(row)
    if not stages:
        console.print(f"nothing to repair: every stage of {dataset} ds={day} succeeded")
        return
    reused = [name for name in (row or {}).get("stages", {}) if name not in stages]
    console.print(
        f"repairing {dataset} ds={day}: rerunning {' → '.join(stages)}"
        + (f"; reusing {', '.join(reused)}" if reused else "")
    )
    with _prefect(settings, verbose), _cluster(settings) as settings:
        failed = _run_days(dataset, [day], stages=stages)
    _print_status(dataset, settings, days=[day])
    if failed:
        raise typer.Exit(1)


@app.command()
def train(
    dataset: str,
    start: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    days: Annotated[int, typer.Option(min=1)] = 1,
    promote: bool = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a model on DAYS days of DATASET from START, ingesting and validating those not
    validated yet (default: the latest TIDEWATER_TRAIN_WINDOW_DAYS validated days); champion
    if --promote (after the sanity gates)."""
    _dataset(dataset)
    settings = _settings()
    with _prefect(settings, verbose):
        window = _days(start, days) if start else None
        try:
            version = _train_first(dataset, window, promote)
        except Exception as error:  # noqa: BLE001 - shown to the user as one line
            raise _fail(f"training failed: {error}") from None
    console.print(f"trained {dataset} model {version}" + (" (champion)" if promote else ""))


@app.command()
def labels(
    dataset: str,
    ds: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Ingest the labels that landed under landing/DATASET-labels/: one day, or every day
    not ingested yet."""
    from flows.labels import ingest_labels
    from flows.resources import lake_of

    settings = _settings()
    _dataset(dataset)
    with _prefect(settings, verbose):
        if ds is not None:
            ingest_labels(dataset, _day(ds))
        else:
            _catch_up_labels(dataset, settings, lake_of(settings))
    _print_status(dataset, settings)


@app.command()
def rewrite(
    dataset: str,
    table: Annotated[
        list[str] | None, typer.Option(help="bronze, silver, quarantine, labels")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rebuild DATASET's tables from their sources under its current declaration: by default
    those whose schema no longer matches it (see the error a run gives), or each --table
    (e.g. after changing a validation rule) and what derives from it."""
    from flows.rewrite import rewrite as rewrite_flow

    _dataset(dataset)
    settings = _settings()
    with _prefect(settings, verbose):
        try:
            rebuilt = rewrite_flow(dataset, table)
        except Exception as error:  # noqa: BLE001 - shown to the user as one line
            raise _fail(f"rewrite failed: {error}") from None
    if not rebuilt:
        console.print(f"{dataset}: every table matches its declaration; nothing to rewrite")
        return
    for name, days in rebuilt.items():
        console.print(f"rewrote {name} of {dataset}: {len(days)} day(s)")
    _print_status(dataset, settings)


policy_app = typer.Typer(help="The retrain policy: replay it over the recorded history.")
app.add_typer(policy_app, name="policy")


@policy_app.command("replay")
def policy_replay(
    dataset: str,
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])],
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a RetrainPolicy field for this replay, e.g. breach_days=3"),
    ] = None,
) -> None:
    """Print what the retrain policy decides on each day from START to END (inclusive),
    from each day's recorded assessment in lake/metrics, beside what the live run decided.
    Nothing is changed."""
    from dataclasses import replace

    from flows.resources import lake_of
    from reports.policy import replay
    from tasks.monitoring import recorded_assessments

    _dataset(dataset)
    settings = _settings()
    try:
        policy = replace(settings.retrain_policy_for(dataset), **_overrides(set_ or []))
    except (TypeError, ValueError) as error:
        raise _fail(f"invalid policy: {error}", code=2) from None
    first, last = _day(start), _day(end)
    since = (start.date() - timedelta(days=policy.memory_days)).isoformat()
    until = (end.date() + timedelta(days=1)).isoformat()
    recorded = recorded_assessments(lake_of(settings), dataset, since, until)
    replayed = [day for day in replay(recorded, policy) if first <= day.ds <= last]
    live = {day.ds: day.verdict for day in recorded}
    table = Table(title=f"{dataset}: retrain policy replay {first}..{last}")
    for name in ("ds", "drift", "bias breaches", "live", "replayed", "why"):
        table.add_column(name)
    for day in replayed:
        was = live.get(day.ds)
        table.add_row(
            day.ds,
            day.drift.value,
            "; ".join(day.bias_breaches) or "-",
            was.value if was else "-",
            day.verdict.value
            if was is None or was == day.verdict
            else f"[bold]{day.verdict.value}[/]",
            "; ".join(day.reasons) or "-",
        )
    console.print(table)
    console.print(f"policy: {policy}")
    same = sum(live.get(day.ds) == day.verdict for day in replayed)
    console.print(f"the replay matches the live decisions on {same} of {len(replayed)} day(s)")


model_app = typer.Typer(help="The model registry (MLflow): list, show, promote, roll back.")
app.add_typer(model_app, name="model")
app.add_typer(quarantine_app, name="quarantine")


def _registry(dataset: str):
    from flows.resources import registry_of

    _dataset(dataset)
    return registry_of(_settings())


def _version_or_exit(registry, dataset: str, version: str | None, default_alias: str) -> str:
    """`version` (checked to exist), else the one `default_alias` names; exit 2 otherwise."""
    version = version or registry.alias(dataset, default_alias)
    if version is None:
        raise _fail(f"no {default_alias} model for {dataset}: name a version", code=2)
    try:
        registry.card(dataset, version)
    except FileNotFoundError as error:
        raise _fail(str(error), code=2) from None
    return version


@model_app.command("list")
def model_list(dataset: str) -> None:
    """Every registered version of DATASET's model, oldest first."""
    registry = _registry(dataset)
    versions = registry.versions(dataset)
    if not versions:
        raise _fail(f"no model of {dataset} registered yet: train one first", code=2)
    by_version: dict[str, list[str]] = {}
    for alias, version in registry.aliases(dataset).items():
        by_version.setdefault(version, []).append(alias)
    table = Table(title=f"{dataset}: model versions ({registry.model_name(dataset)})")
    for name in ("version", "created", "aliases", "trained on", "silver", "AUC", "status", "run"):
        table.add_column(name)
    for version in versions:
        card = registry.card(dataset, version)
        auc = card.metrics.get("auc")
        table.add_row(
            version,
            card.created_at[:19],
            ", ".join(sorted(by_version.get(version, []))) or "-",
            card.tags.get("tidewater.window", "-"),
            card.tags.get("tidewater.silver_version", "-"),
            "-" if auc is None else f"{auc:.4f}",
            card.tags.get("tidewater.status", "-"),
            card.run_id,
        )
    console.print(table)


@model_app.command("show")
def model_show(dataset: str, version: Annotated[str | None, typer.Argument()] = None) -> None:
    """The card, tags, aliases and artifact locations of VERSION (default: the champion)."""
    import json

    registry = _registry(dataset)
    version = _version_or_exit(registry, dataset, version, "champion")
    card = registry.card(dataset, version)
    aliases = sorted(a for a, v in registry.aliases(dataset).items() if v == version)
    console.print(
        f"[bold]{registry.model_name(dataset)} {version}[/]  aliases: "
        f"{', '.join(aliases) or '-'}  run: {card.run_id}"
    )
    shown = {
        "created_at": card.created_at,
        "objective": card.objective,
        "target": card.target,
        "positive_label": card.positive_label,
        "features": card.feature_spec.names,
        "trained_on": card.trained_on,
        "metrics": card.metrics,
        "params": card.params,
        "checksum": card.checksum,
        "tags": card.tags,
        "artifacts": registry.locations(dataset, version),
    }
    console.print_json(json.dumps(shown, default=str))


@model_app.command("promote")
def model_promote(
    dataset: str,
    version: str,
    reason: Annotated[str, typer.Option(help="why, for the ledger")] = "promoted from the CLI",
) -> None:
    """Name VERSION champion; the previous champion is recorded on it (for rollback)."""
    from flows.resources import lake_of
    from tasks.promotion import promote

    registry = _registry(dataset)
    version = _version_or_exit(registry, dataset, version, "champion")
    old, new = promote(registry, lake_of(_settings()), dataset, version, reason, by="cli")
    console.print(f"{dataset}: champion {old or '-'} -> {new}")


@model_app.command("rollback")
def model_rollback(
    dataset: str,
    version: Annotated[str | None, typer.Argument(help="default: the previous champion")] = None,
    reason: Annotated[str, typer.Option(help="why, for the ledger")] = "rolled back from the CLI",
) -> None:
    """Move the champion back to VERSION, by default to the one it replaced."""
    from flows.resources import lake_of
    from tasks.promotion import rollback

    registry = _registry(dataset)
    if version is not None:
        version = _version_or_exit(registry, dataset, version, "champion")
    try:
        old, new = rollback(registry, lake_of(_settings()), dataset, version, reason, by="cli")
    except LookupError as error:
        raise _fail(str(error.args[0]), code=2) from None
    console.print(f"{dataset}: champion {old or '-'} -> {new} (rolled back)")


def _overrides(pairs: list[str]) -> dict[str, int | bool]:
    values: dict[str, int | bool] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"expected name=value, got {pair!r}")
        lowered = text.strip().lower()
        values[name.strip()] = lowered == "true" if lowered in ("true", "false") else int(text)
    return values


@app.command()
def status(
    dataset: str,
    start: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    failed: Annotated[bool, typer.Option("--failed", help="only the days that failed")] = False,
) -> None:
    """Per-day row counts, stage statuses and drift verdicts of DATASET, from the ledger,
    for the days from START to END. A stage running now shows as running; one whose process
    died without recording its end, as crashed. Exits 1 when a day in range has a stage
    whose latest run failed, crashed, was interrupted or cancelled, 0 otherwise."""
    from flows.resources import lake_of
    from tasks.ledger import day_status

    _dataset(dataset)
    settings = _settings()
    first, last = _day(start) if start else "", _day(end) if end else "9999-12-31"
    rows = [row for row in day_status(lake_of(settings), dataset) if first <= row["ds"] <= last]
    if not rows:
        console.print(
            f"no runs of {dataset} recorded" + (" in that range" if start or end else " yet")
        )
        return
    bad = [row["ds"] for row in rows if _did_not_succeed(row)]
    shown = bad if failed else [row["ds"] for row in rows]
    if shown:
        _print_status(dataset, settings, days=shown)
    else:
        console.print(f"no day of {dataset} in range failed")
    if bad:
        err.print(f"{len(bad)} of {len(rows)} days did not succeed: {', '.join(bad)}")
        raise typer.Exit(1)


def _did_not_succeed(row: dict) -> bool:
    """A stage's latest run failed, crashed, was interrupted or cancelled (running is not)."""
    return any(state not in _NOT_FAILED for state in row["stages"].values())


@app.command()
def serve(
    stop: Annotated[bool, typer.Option("--stop", help="stop everything serve started")] = False,
    worker: Annotated[bool, typer.Option(help="start a Prefect worker on the pool")] = True,
) -> None:
    """Start the embedded Prefect server (API + UI; unless PREFECT_API_URL is set), a
    long-lived local Dask cluster every run attaches to (unless TIDEWATER_DASK_ADDRESS is
    set), an HTTP server of the reports folder and a Prefect worker; print their addresses."""
    settings = _settings(check_storage=not stop)
    from deployments import services

    if stop:
        stopped = [name for name in services.SERVICES if services.stop_service(settings.home, name)]
        from deployments.server import stop_server

        if stop_server(settings.home):
            stopped.append("prefect server")
        console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return
    _quiet_terminal(verbose=False)
    console.print(_start_services(settings, worker))


def _start_services(settings, worker: bool) -> Table:
    """The services of `tidewater serve` (each started unless it runs), as a table: the
    Prefect server first, then the Dask cluster, the reports server and the worker at once
    (runs find the served cluster through TIDEWATER_HOME, so the worker needs no address)."""
    from concurrent.futures import ThreadPoolExecutor

    import prefect.client.orchestration  # noqa: F401 - imported once, not by each thread at once

    from deployments.server import ensure_prefect_api

    with console.status("starting the Prefect server"):
        api_url = ensure_prefect_api(settings.home)
    env = os.environ | {"TIDEWATER_HOME": str(settings.home), "PREFECT_API_URL": api_url}
    table = Table(title="tidewater serve", show_header=False)
    table.add_row("Prefect UI", api_url.removesuffix("/api"))
    table.add_row("Prefect API", api_url)
    starts = {"Dask scheduler": _start_dask}
    if _serves_reports(settings):  # decided first: runs of the worker link the reports server
        reports_url = f"http://127.0.0.1:{_reports_port(settings.home)}"
        env.setdefault("TIDEWATER_REPORTS_URL", reports_url)
        starts["Reports"] = partial(_start_reports, url=reports_url)
    if worker:
        starts["Prefect worker"] = _start_worker
    with (
        console.status("starting " + ", ".join(name for name in starts)),
        ThreadPoolExecutor(len(starts)) as pool,
    ):
        started = {name: pool.submit(start, settings, env) for name, start in starts.items()}
        for name, future in started.items():
            if address := future.result():
                table.add_row(name, address)
    table.add_row("Logs", str(settings.home / "serve"))
    return table


def _start_dask(settings, env: dict) -> str:
    """The served Dask cluster (unless TIDEWATER_DASK_ADDRESS names one); its address."""
    from deployments import services
    from flows.resources import dask_address_of
    from tasks.cluster import served_scheduler_address

    if settings.dask_address is None:
        services.start_service(
            settings.home,
            "dask",
            services.python_module("deployments.dask_service"),
            env,
            ready=lambda: served_scheduler_address(settings.home) is not None,
        )
    return dask_address_of(settings)


def _serves_reports(settings) -> bool:
    """Whether the reports are a local folder (which `serve` serves over HTTP)."""
    return "://" not in settings.reports_uri or settings.reports_uri.startswith("file://")


def _start_reports(settings, env: dict, url: str) -> str:
    """An HTTP server of the local reports folder at `url`; its URL."""
    from deployments import services

    reports = Path(settings.reports_uri.removeprefix("file://"))
    reports.mkdir(parents=True, exist_ok=True)
    port = url.rsplit(":", 1)[1]
    served = services.start_service(
        settings.home,
        "reports",
        services.python_module(
            "http.server", port, "--bind", "127.0.0.1", "--directory", str(reports)
        ),
        env,
        ready=services.http_ok(url + "/"),
        url=url,
    )
    return served["url"]


def _start_worker(settings, env: dict) -> str:
    """A Prefect process worker on the work pool, polling every 2 s so that a triggered
    retrain starts within seconds (Prefect's default is 10 s)."""
    from deployments import services

    services.start_service(
        settings.home,
        "worker",
        services.prefect_cli("worker", "start", "--pool", settings.work_pool, "--type", "process"),
        {"PREFECT_WORKER_QUERY_SECONDS": "2"} | env,
        ready=services.online_workers(settings.work_pool, env["PREFECT_API_URL"]),
    )
    return f"pool {settings.work_pool}"


@app.command()
def deploy() -> None:
    """Apply the work pool, a daily and a retrain deployment per registered dataset, and
    (with TIDEWATER_ALERT_WEBHOOK_URL) the alert automations to the Prefect API."""
    applied = _apply_deployments(_settings(check_storage=False))
    console.print(f"work pool: {applied.work_pool}")
    for name in applied.deployments:
        console.print(f"deployment: {name}")
    for name in applied.triggers:
        console.print(f"trigger: {name}")
    for name in applied.automations:
        console.print(f"automation: {name}")
    if not applied.automations:
        console.print("no alert automations: set TIDEWATER_ALERT_WEBHOOK_URL to get them")


@app.command()
def doctor() -> None:
    """Check the Prefect API and UI, the work pool, Dask, storage, the model registry, the
    GPU and the pinned versions; say what is wrong and how to fix it."""
    settings = _settings(check_storage=False)  # storage is one of its checks
    from deployments.doctor import exit_code, render_checks, run_checks
    from deployments.server import running_server
    from flows.resources import dask_address_of, store_of

    embedded = running_server(settings.home)
    api_url = os.environ.get("PREFECT_API_URL") or (embedded and embedded["api_url"])
    with console.status("checking"):
        checks = run_checks(
            settings,
            api_url=api_url,
            dask_address=dask_address_of(settings),
            work_pool=settings.work_pool,
            store=store_of(settings),
        )
    console.print(render_checks(checks))
    raise typer.Exit(exit_code(checks))


def _apply_deployments(settings):
    with _prefect(settings, verbose=False):
        return _apply_to_current_api(settings)


def _apply_to_current_api(settings):
    """Apply what `tidewater deploy` applies to this process's Prefect API."""
    from datasets import dataset_names
    from deployments.deploy import apply_all

    webhook = settings.alert_webhook_url
    return apply_all(
        dataset_names(),
        settings.work_pool,
        webhook.get_secret_value() if webhook else None,
        settings.scoring_slots,
    )


def _reports_port(home: Path) -> int:
    """The reports server's port: the running server's, else the one it had before while
    free (artifacts already link to it), else a new one, remembered under `home`."""
    import socket

    from deployments import services

    running = services.running_service(home, "reports")
    if running:
        return int(running["url"].rsplit(":", 1)[1])
    remembered = home / "serve" / "reports.port"
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", int(remembered.read_text())))
        except (OSError, ValueError):
            sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(str(port))
    return port


DEMO_FAIRNESS = {"eo_difference_max": 0.3, "regression_tolerance": 0.15}


def _set_policy_field(variable: str, dataset: str, keep: bool = False, **fields) -> None:
    """Set `fields` of `dataset`'s policy in the JSON of environment variable `variable`,
    keeping whatever else it says (and, with `keep`, the fields it sets already)."""
    policies = json.loads(os.environ.get(variable) or "{}")
    own = policies.get(dataset, {})
    policies[dataset] = fields | own if keep else own | fields
    os.environ[variable] = json.dumps(policies)


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=4, max=60)] = 8,
    start: DateOption = datetime(2024, 1, 1),
    drift_day: Annotated[int, typer.Option(help="first day (1-based) with planted drift")] = 4,
    train_days: Annotated[int, typer.Option(min=1)] = 3,
    labels_delay: Annotated[int, typer.Option(min=0, help="days the labels land after")] = 2,
    retrain_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="days a retrain trains on (default: TIDEWATER_RETRAIN_POLICY's, 7)"
        ),
    ] = None,
    shadow_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="shadow days before promotion (default: TIDEWATER_SHADOW_POLICY's, or 2)"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start what `serve` starts and apply the deployments, land the UCI Adult data as daily
    partitions (drift and bad files planted; each day's labels on the labels feed
    LABELS_DELAY days later), train the first model if there is none, run the pipeline for
    every day and print a summary. The drift makes the monitor request a retrain: the
    retrain deployment's automation runs it on the worker, the challenger is shadow-scored
    for SHADOW_DAYS days and then promoted (or retired), and the later days show it."""
    _quiet_terminal(verbose)  # before anything imports Prefect and sets up its logging
    if retrain_days:
        _set_policy_field("TIDEWATER_RETRAIN_POLICY", "adult", train_days=retrain_days)
    if shadow_days:
        _set_policy_field("TIDEWATER_SHADOW_POLICY", "adult", shadow_days=shadow_days)
    else:  # two shadow days keep the demo short, unless the environment says otherwise
        _set_policy_field("TIDEWATER_SHADOW_POLICY", "adult", shadow_days=2, keep=True)
    # The planted drift (more high earners, most of them men) gives any model that learns it
    # an equalized-odds gap by sex of about 0.24 (the champion, which under-predicts
    # everyone, about 0.15) and a lower parity ratio by race: under the default fairness
    # policy the gate rightly rejects the candidate. The demo relaxes it (printed).
    _set_policy_field("TIDEWATER_FAIRNESS_POLICY", "adult", keep=True, **DEMO_FAIRNESS)
    fairness = json.loads(os.environ["TIDEWATER_FAIRNESS_POLICY"])["adult"]
    console.print(f"demo fairness policy of adult (TIDEWATER_FAIRNESS_POLICY): {fairness}")
    dataset, settings = "adult", _settings()
    spec = _dataset(dataset)
    from concurrent.futures import ThreadPoolExecutor

    from flows.resources import registry_of, store_of

    with ThreadPoolExecutor(2) as meanwhile:  # while the services start
        landed = meanwhile.submit(
            spec.land,
            settings.landing_uri,
            start.date(),
            days,
            drift_from=(start + timedelta(days=drift_day - 1)).date(),
            storage_options=store_of(settings).fsspec_options(settings.landing_uri),
            labels_delay_days=labels_delay,
        )
        # opening the registry imports MLflow and creates its database: seconds
        champion = meanwhile.submit(lambda: registry_of(settings).alias(dataset, "champion"))
        served = _start_services(settings, worker=True)
        _apply_deployments(settings)
        with console.status(f"landing {days} days of {dataset} under {settings.landing_uri}"):
            landed.result()
            champion = champion.result()
    settings = _settings()  # now with the reports server's URL
    all_days = _days(start, days)
    with _prefect(settings, verbose), _cluster(settings) as settings:
        if champion is None:
            version = _train_first(dataset, all_days[:train_days], promote=True)
            console.print(f"trained first model {version} on {train_days} days")
        failed = _run_days(dataset, all_days, follow_retrains=True)
    _print_status(dataset, settings, days=all_days)
    console.print(served)
    console.print(f"lake: {settings.lake_uri}   stop the services: tidewater serve --stop")
    if failed:
        raise typer.Exit(1)


def _count(value) -> str:
    return "-" if value is None else f"{int(value):,}"


def _stage_states(stages: dict[str, str]) -> str:
    """`all ok`, or the stages running now and those whose latest run did not succeed,
    with how it ended."""
    running = [f"running: {name}" for name, state in stages.items() if state == "running"]
    bad = [f"{state}: {name}" for name, state in stages.items() if state not in _NOT_FAILED]
    shown = ([f"[yellow]{', '.join(running)}[/]"] if running else []) + (
        [f"[red]{', '.join(bad)}[/]"] if bad else []
    )
    return ", ".join(shown) or "all ok"


_NOT_FAILED = ("succeeded", "running")


def _print_status(dataset: str, settings, days: list[str] | None = None) -> bool:
    from flows.resources import lake_of
    from tasks.ledger import day_status

    rows = [row for row in day_status(lake_of(settings), dataset) if not days or row["ds"] in days]
    if not rows:
        return False
    table = Table(title=f"{dataset}: per-day status (from the ledger)")
    counts = ("landed", "bronze", "rejected", "silver", "quarantined", "scored", "labels")
    for name in ("ds", *counts, "model", "drift", "stages", "report"):
        table.add_column(name, justify="right" if name in counts else "left")
    colours = {"ok": "green", "warn": "yellow", "retrain": "bold red"}
    reports_root = settings.reports_uri.rstrip("/") + "/"
    for row in rows:
        verdict = row["verdict"] or "-"
        table.add_row(
            row["ds"],
            *(_count(row[name]) for name in counts),
            row["model"] or "-",
            f"[{colours.get(verdict, 'white')}]{verdict}[/]",
            _stage_states(row["stages"]),
            (row["report"] or "-").removeprefix(f"{reports_root}{dataset}/"),
        )
    console.print(table)
    console.print(f"reports under {reports_root}")
    for row in rows:
        for stage, error in row["errors"].items():
            err.print(f"[red]{row['ds']} {stage} {row['stages'][stage]}:[/] {error}")
    return True


if __name__ == "__main__":
    app()
