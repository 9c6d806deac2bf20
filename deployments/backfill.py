"""Running a backfill's planned days: through the daily deployment on the work pool's
workers (flow runs tagged `backfill:{id}`, the day in their name), or in this process, at
most `max_parallel` days at once; recorded in the ledger (a `backfill` row per change, the
latest one with every day's outcome) and as a Prefect artifact.

A backfill that overlaps a running one of the same dataset is refused. "Running" means its
latest ledger row says so and its process lives: on this host its pid, elsewhere a
heartbeat (the row is rewritten at least every `HEARTBEAT_SECONDS`). Days whose flow run is
still in flight on a worker (a backfill killed midway leaves them) are adopted, not run a
second time.
"""

from __future__ import annotations

import contextvars
import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from tasks.lake import Lake
from tasks.ledger import LedgerEntry, backfill_records, read_ledger, record_entry

HEARTBEAT_SECONDS = 60
STALE_AFTER = timedelta(minutes=10)  # a backfill elsewhere silent this long is dead
POLL_SECONDS = 1.0
DAY_STATES = ("queued", "running", "succeeded", "failed")


class BackfillOverlaps(RuntimeError):
    """A running backfill of the dataset covers some of the days."""


@dataclass
class DayRun:
    """One planned day of a running backfill: its state and, once ended, its outcome."""

    ds: str
    stages: tuple[str, ...]
    state: str = "queued"  # one of DAY_STATES
    flow_run: str | None = None
    flow_run_id: str | None = None
    adopted: bool = False
    rows: int | None = None
    seconds: float | None = None
    error: str | None = None
    started: float | None = field(default=None, repr=False)


@dataclass
class Backfill:
    """A backfill of `dataset`'s days from `start` to `end`, as the ledger records it."""

    dataset: str
    start: str
    end: str
    policy: str
    mode: str  # "deployment" or "local"
    max_parallel: int
    days: list[DayRun]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    who: str = field(default_factory=getpass.getuser)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def tag(self) -> str:
        return f"backfill:{self.id}"

    def tags_of(self, ds: str) -> list[str]:
        """The tags of the day's flow run: the backfill's, the dataset's and the day's."""
        return [self.tag, f"dataset:{self.dataset}", f"ds:{ds}"]

    def counts(self) -> dict[str, int]:
        states = [day.state for day in self.days]
        return {state: states.count(state) for state in DAY_STATES}

    def failed(self) -> list[DayRun]:
        return [day for day in self.days if day.state == "failed"]

    def describe(self) -> str:
        return (
            f"backfill {self.id} of {self.dataset} {self.start}..{self.end} ({self.policy}), "
            f"started by {self.who} at {self.started_at:%Y-%m-%d %H:%M} UTC "
            f"(pid {self.pid} on {self.host})"
        )

    def record(self, lake: Lake, status: str) -> None:
        """Append the backfill's current state to the ledger under its id: `rows_in` are the
        rows landed on the days that succeeded; `details` the range, policy, who, where,
        the days per state and each day's outcome."""
        outcome = {
            day.ds: {k: v for k, v in asdict(day).items() if k not in ("ds", "started")}
            for day in self.days
        }
        details = {
            "start": self.start,
            "end": self.end,
            "policy": self.policy,
            "mode": self.mode,
            "max_parallel": self.max_parallel,
            "who": self.who,
            "host": self.host,
            "pid": self.pid,
            "counts": self.counts(),
            "days": outcome,
        }
        record_entry(
            lake,
            LedgerEntry(
                dataset=self.dataset,
                ds=self.start,
                stage="backfill",
                run_id=self.id,
                status=status,
                started_at=self.started_at,
                rows_in=sum(day.rows or 0 for day in self.days if day.state == "succeeded"),
                error="; ".join(f"{day.ds}: {day.error}" for day in self.failed())[:2000] or None,
                details=details,
            ),
        )


def running_backfills(lake: Lake, dataset: str) -> list[dict]:
    """The ledger records of `dataset`'s backfills that are still running (see the module's
    docstring for how that is known)."""
    now = datetime.now(UTC)
    return [
        record
        for record in backfill_records(lake, dataset)
        if record["status"] == "running" and _alive(record, now)
    ]


def _alive(record: dict, now: datetime) -> bool:
    details = record["details"] or {}
    if details.get("host") == socket.gethostname():
        try:
            os.kill(int(details["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True
    return now - record["finished_at"].to_pydatetime() < STALE_AFTER


def refuse_overlap(lake: Lake, backfill: Backfill) -> None:
    """Raise BackfillOverlaps, naming it, when a running backfill of the dataset shares a
    day with `backfill`."""
    for record in running_backfills(lake, backfill.dataset):
        details = record["details"]
        if details["start"] <= backfill.end and backfill.start <= details["end"]:
            raise BackfillOverlaps(
                f"backfill {record['run_id']} of {backfill.dataset} "
                f"{details['start']}..{details['end']} ({details['policy']}) is running, "
                f"started by {details['who']} at {record['started_at']:%Y-%m-%d %H:%M} UTC "
                f"(pid {details['pid']} on {details['host']}); wait for it, or stop it"
            )


def start_backfill(lake: Lake, backfill: Backfill) -> None:
    """Record `backfill` as running, unless it overlaps a running one (BackfillOverlaps):
    one check at a time per dataset, so two backfills started at once cannot both pass."""
    from tasks.concurrency import one_at_a_time

    with one_at_a_time(f"tidewater-backfill-{backfill.dataset}", timeout_seconds=60):
        refuse_overlap(lake, backfill)
        backfill.record(lake, "running")


class InProcessDays:
    """Runs days in this process, on threads: the pipeline flow called directly, tagged
    with the backfill's tag."""

    def __init__(self, backfill: Backfill):
        self.backfill = backfill
        self.pool = ThreadPoolExecutor(backfill.max_parallel, thread_name_prefix="backfill")
        self.futures: dict[str, Future] = {}

    def start(self, day: DayRun) -> None:
        day.flow_run = f"pipeline-{self.backfill.dataset}-{day.ds}"
        # a copy of this thread's context: Prefect's settings (the API to use) live in it
        self.futures[day.ds] = self.pool.submit(contextvars.copy_context().run, self._run, day)

    def _run(self, day: DayRun) -> dict:
        from prefect import tags

        from flows.pipeline import pipeline

        with tags(*self.backfill.tags_of(day.ds)):
            return pipeline(self.backfill.dataset, day.ds, stages=list(day.stages))

    def poll(self, days: Sequence[DayRun]) -> None:
        for day in days:
            future = self.futures[day.ds]
            if not future.done():
                continue
            if future.exception() is None:
                day.state, day.rows = "succeeded", future.result()["landed"]
            else:
                error = future.exception()
                day.state, day.error = "failed", f"{type(error).__name__}: {error}"

    def close(self) -> list[str]:
        self.pool.shutdown(wait=True, cancel_futures=True)
        return []


class DeploymentDays:
    """Runs days as flow runs of the dataset's daily deployment, which the work pool's
    workers pick up; adopts a day's flow run still in flight from an earlier backfill."""

    ACTIVE = ("SCHEDULED", "PENDING", "RUNNING")

    def __init__(self, backfill: Backfill, lake: Lake, deployment: str):
        self.backfill, self.lake, self.deployment = backfill, lake, deployment

    def start(self, day: DayRun) -> None:
        from prefect.deployments import run_deployment

        run = self._in_flight(day.ds)
        day.adopted = run is not None
        run = run or run_deployment(
            self.deployment,
            parameters={
                "dataset": self.backfill.dataset,
                "ds": day.ds,
                "stages": list(day.stages),
            },
            flow_run_name=f"pipeline-{self.backfill.dataset}-{day.ds}",
            tags=self.backfill.tags_of(day.ds),
            timeout=0,
            as_subflow=False,
        )
        day.flow_run, day.flow_run_id = run.name, str(run.id)

    def _in_flight(self, ds: str):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )

        tags = [f"dataset:{self.backfill.dataset}", f"ds:{ds}"]
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=tags),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=self.ACTIVE)),
                ),
                limit=1,
            )
        return runs[0] if runs else None

    def poll(self, days: Sequence[DayRun]) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        ids = [uuid.UUID(day.flow_run_id) for day in days]
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
            )
        states = {str(run.id): run.state for run in runs}
        for day in days:
            state = states.get(day.flow_run_id)
            if state is None or not state.is_final():
                continue
            recorded = self._recorded(day)
            if state.is_completed():
                day.state, day.rows = "succeeded", recorded.get("rows_in")
            else:
                day.state = "failed"
                day.error = recorded.get("error") or f"{state.name}: {state.message}"

    def _recorded(self, day: DayRun) -> dict:
        """The pipeline's ledger row of the day's flow run ({} if it recorded none)."""
        ledger = read_ledger(self.lake, self.backfill.dataset, day.ds)
        mine = ledger[(ledger["run_id"] == day.flow_run_id) & (ledger["stage"] == "pipeline")]
        if mine.empty:
            return {}
        row = mine.iloc[-1].to_dict()
        return {k: (None if v != v else v) for k, v in row.items()}  # NaN → None

    def close(self) -> list[str]:
        """The flow runs still in flight (they go on on the workers)."""
        return [day.flow_run for day in self.backfill.days if day.state == "running"]


def run_backfill(
    backfill: Backfill,
    lake: Lake,
    days: InProcessDays | DeploymentDays,
    on_change: Callable[[Backfill], None],
    first_alone: bool = False,
) -> None:
    """Run the days of a started backfill, at most `max_parallel` at once, in the plan's
    order (with `first_alone`, the first one before any other: it trains the first model);
    `on_change` after each change of state. Records the backfill in the ledger when
    a day ends (or every HEARTBEAT_SECONDS) and when it ends: succeeded,
    failed (some day failed) or interrupted (the exception then goes on)."""
    recorded_at = time.monotonic()
    status = "interrupted"
    try:
        while any(day.state in ("queued", "running") for day in backfill.days):
            running = [day for day in backfill.days if day.state == "running"]
            first_ran = backfill.days[0].state in ("succeeded", "failed")
            at_once = 1 if first_alone and not first_ran else backfill.max_parallel
            for day in [d for d in backfill.days if d.state == "queued"]:
                if len(running) >= at_once:
                    break
                days.start(day)
                day.state, day.started = "running", time.monotonic()
                running.append(day)
            on_change(backfill)
            time.sleep(POLL_SECONDS)
            days.poll(running)
            ended = [day for day in running if day.state != "running"]
            for day in ended:
                day.seconds = round(time.monotonic() - day.started, 1)
            if ended or time.monotonic() - recorded_at > HEARTBEAT_SECONDS:
                backfill.record(lake, "running")
                recorded_at = time.monotonic()
        status = "failed" if backfill.failed() else "succeeded"
    finally:
        days.close()
        backfill.record(lake, status)
        on_change(backfill)
