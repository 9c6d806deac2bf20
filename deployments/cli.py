"""The `tidewater` command line: land data, run days, check status, run the demo."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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


def _settings():
    from flows.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        raise _fail(f"invalid TIDEWATER_* settings:\n{error}", code=2) from None


def _dataset(name: str):
    from datasets import get_dataset

    try:
        return get_dataset(name)
    except KeyError as error:
        raise _fail(str(error.args[0]), code=2) from None


@contextmanager
def _prefect(settings, verbose: bool) -> Iterator[str]:
    """One Prefect API for this command and every process it starts."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    # The local cluster's scheduler lives in this process: its chatter only with --verbose.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose else "warning")
    from deployments.server import ensure_prefect_api

    with console.status("connecting to the Prefect API"):
        api_url = ensure_prefect_api(settings.home)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        yield api_url


@contextmanager
def _cluster(settings) -> Iterator:
    """Settings whose Dask address outlives every flow run of this command."""
    if settings.dask_address:
        yield settings
        return
    from flows.resources import cluster_spec_of
    from tasks.cluster import local_cluster

    with local_cluster(cluster_spec_of(settings)) as address:
        yield settings.model_copy(update={"dask_address": address})


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )


def _run_days(dataset: str, days: list[str], settings) -> list[str]:
    """Run the pipeline for each day; returns the days that failed (with their errors shown)."""
    from flows.pipeline import pipeline

    failed = []
    with _progress() as progress:
        bar = progress.add_task(f"pipeline {dataset}", total=len(days))
        for ds in days:
            progress.update(bar, description=f"pipeline {dataset} ds={ds}")
            try:
                pipeline(dataset, ds, settings)
            except Exception as error:  # noqa: BLE001 - reported, then the next day runs
                failed.append(ds)
                err.print(f"[red]ds={ds} failed:[/] {type(error).__name__}: {error}")
            progress.advance(bar)
    return failed


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
    spec, settings = _dataset(dataset), _settings()
    with console.status(f"landing {days} days of {dataset}"):
        written = spec.land(
            settings.landing_uri,
            start.date(),
            days,
            drift_from=drift_from.date() if drift_from else None,
            bad_files=bad_files,
            seed=seed,
            storage_options=settings.storage_options,
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
    with _prefect(settings, verbose), _cluster(settings) as settings:
        failed = _run_days(dataset, [_day(ds)], settings)
    _print_status(dataset, settings, days=[_day(ds)])
    if failed:
        raise typer.Exit(1)


@app.command()
def train(
    dataset: str,
    start: DateOption,
    days: Annotated[int, typer.Option(min=1)] = 1,
    promote: bool = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a model on DAYS days of DATASET's silver data from START (champion if --promote)."""
    _dataset(dataset)
    settings = _settings()
    with _prefect(settings, verbose):
        from flows.train import train as train_flow

        try:
            version = train_flow(dataset, _days(start, days), promote=promote, settings=settings)
        except Exception as error:  # noqa: BLE001 - shown to the user as one line
            raise _fail(f"training failed: {error}") from None
    console.print(f"trained {dataset} model {version}" + (" (champion)" if promote else ""))


@app.command()
def status(dataset: str) -> None:
    """Per-day row counts, stage statuses and drift verdicts of DATASET, from the ledger."""
    _dataset(dataset)
    if not _print_status(dataset, _settings()):
        raise _fail(f"no runs of {dataset} recorded yet")


@app.command()
def serve(
    stop: Annotated[bool, typer.Option("--stop", help="stop the embedded server instead")] = False,
) -> None:
    """Start the embedded Prefect server (API + UI) if none is configured, and print its URL."""
    settings = _settings()
    if stop:
        from deployments.server import stop_server

        stopped = stop_server(settings.home)
        console.print("stopped the embedded Prefect server" if stopped else "no server was running")
        return
    if os.environ.get("PREFECT_API_URL"):
        console.print(f"using the configured Prefect API {os.environ['PREFECT_API_URL']}")
        return
    from deployments.server import start_server

    info = start_server(settings.home)
    console.print(f"Prefect UI: {info['ui_url']}  (API {info['api_url']}, pid {info['pid']})")


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=4, max=60)] = 8,
    start: DateOption = datetime(2024, 1, 1),
    drift_day: Annotated[int, typer.Option(help="first day (1-based) with planted drift")] = 6,
    train_days: Annotated[int, typer.Option(min=1)] = 3,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Land the UCI Adult data as daily partitions (drift and bad files planted), train the
    first model if there is none, run the pipeline for every day and print a summary."""
    dataset, settings = "adult", _settings()
    spec = _dataset(dataset)
    all_days = _days(start, days)
    with console.status(f"landing {days} days of {dataset} under {settings.landing_uri}"):
        spec.land(
            settings.landing_uri,
            start.date(),
            days,
            drift_from=(start + timedelta(days=drift_day - 1)).date(),
            storage_options=settings.storage_options,
        )
    with _prefect(settings, verbose) as api_url, _cluster(settings) as settings:
        from flows.ingest import ingest
        from flows.train import train as train_flow
        from flows.validate import validate
        from tasks.model_store import ModelStore

        store = ModelStore(settings.models_uri, settings.storage_options)
        if store.alias(dataset, "champion") is None:
            window = all_days[:train_days]
            with console.status(f"training the first model on {window[0]}..{window[-1]}"):
                for ds in window:
                    ingest(dataset, ds, settings)
                    validate(dataset, ds, settings)
                version = train_flow(dataset, window, settings=settings)
            console.print(f"trained first model {version} on {len(window)} days")
        failed = _run_days(dataset, all_days, settings)
    _print_status(dataset, settings, days=all_days)
    console.print(f"Prefect UI: {api_url.removesuffix('/api')}   lake: {settings.lake_uri}")
    if failed:
        raise typer.Exit(1)


def _count(value) -> str:
    return "-" if value is None else f"{int(value):,}"


def _print_status(dataset: str, settings, days: list[str] | None = None) -> bool:
    from flows.resources import lake_of
    from tasks.ledger import day_status

    rows = [row for row in day_status(lake_of(settings), dataset) if not days or row["ds"] in days]
    if not rows:
        return False
    table = Table(title=f"{dataset}: per-day status (from the ledger)")
    counts = ("landed", "bronze", "rejected", "silver", "quarantined", "scored")
    for name in ("ds", *counts, "model", "drift", "stages", "report"):
        table.add_column(name, justify="right" if name in counts else "left")
    colours = {"ok": "green", "warn": "yellow", "retrain": "bold red"}
    reports_root = settings.reports_uri.rstrip("/") + "/"
    for row in rows:
        verdict = row["verdict"] or "-"
        failed = [name for name, state in row["stages"].items() if state != "succeeded"]
        table.add_row(
            row["ds"],
            *(_count(row[name]) for name in counts),
            row["model"] or "-",
            f"[{colours.get(verdict, 'white')}]{verdict}[/]",
            "[red]failed: " + ", ".join(failed) + "[/]" if failed else "all ok",
            (row["report"] or "-").removeprefix(f"{reports_root}{dataset}/"),
        )
    console.print(table)
    console.print(f"reports under {reports_root}")
    for row in rows:
        for stage, error in row["errors"].items():
            err.print(f"[red]{row['ds']} {stage} failed:[/] {error}")
    return True


if __name__ == "__main__":
    app()
