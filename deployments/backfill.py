"""Running a backfill's planned days, at most `max_parallel` at once: on the work pool
(lanes: flow runs of the dataset's backfill deployment, each running the days assigned to
it in one warm process) or in this process, on threads. Every day is a flow run of
`pipeline` tagged `backfill:{id}`, the day in its name. The backfill is recorded in the
ledger (a `backfill` row per change, the latest one with every day's outcome) and as a
Prefect artifact.

A backfill that overlaps a running one of the same dataset is refused. "Running" means its
latest ledger row says so and its process lives: on this host its pid, elsewhere a
heartbeat (the row is rewritten at least every `HEARTBEAT_SECONDS`). Days whose flow run is
still in flight (a backfill killed midway leaves them to its lanes) are adopted, not run a
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
from tasks.ledger import (
    LedgerEntry,
    backfill_records,
    process_alive,
    read_ledger,
    record_entry,
)

HEARTBEAT_SECONDS = 60
STALE_AFTER = timedelta(minutes=10)  # a backfill elsewhere silent this long is dead
POLL_SECONDS = 1.0
DAY_STATES = ("queued", "running", "succeeded", "failed")
# A day that failed because the Prefect API was briefly unavailable (still a 503 after the
# client's own retries: the embedded SQLite server under load; a dropped connection) runs
# again, at most RETRIES_OF_A_DAY times: its pipeline is idempotent, so a rerun converges.
RETRIES_OF_A_DAY = 2
TRANSIENT_API_ERRORS = ("503 Service Unavailable", "ConnectError", "RemoteProtocolError")


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
    retried_after: list[str] = field(default_factory=list)  # the transient errors it reran on
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
    alive = process_alive(details.get("host"), details.get("pid"))
    if alive is not None:
        return alive
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
    """Runs days in this process, on threads: each a day run (see flows.backfill_lane)
    tagged with the backfill's tags."""

    def __init__(self, backfill: Backfill):
        self.backfill = backfill
        self.pool = ThreadPoolExecutor(backfill.max_parallel, thread_name_prefix="backfill")
        self.futures: dict[str, Future] = {}

    def start(self, day: DayRun) -> None:
        from flows.backfill_lane import create_day_run

        run = create_day_run(
            self.backfill.dataset, day.ds, list(day.stages), self.backfill.tags_of(day.ds)
        )
        day.flow_run, day.flow_run_id = run.name, str(run.id)
        # a copy of this thread's context: Prefect's settings (the API to use) live in it
        self.futures[day.ds] = self.pool.submit(contextvars.copy_context().run, _run_day, run)

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


def _run_day(run) -> dict:
    """Run a created day run here; its result, or the exception it failed with."""
    from flows.backfill_lane import run_day

    return run_day(run).result()


class LaneDays:
    """Runs days as day runs (see flows.backfill_lane) on lanes: flow runs of the dataset's
    backfill deployment on the work pool, at most `max_parallel`, each running the day runs
    assigned to it one after the other in one warm process. Adopts a day's flow run still
    in flight from an earlier backfill; a day whose lane ended before running it goes to
    another lane, and one whose lane died under it fails (its run is marked crashed)."""

    ACTIVE = ("SCHEDULED", "PENDING", "RUNNING")

    def __init__(self, backfill: Backfill, lake: Lake, deployment: str):
        self.backfill, self.lake, self.deployment = backfill, lake, deployment
        self.lanes: list[str] = []  # keys of the lanes this backfill started
        self.serving: dict[str, str] = {}  # lane key → the ds of the day assigned to it

    def start(self, day: DayRun) -> None:
        from flows.backfill_lane import create_day_run, lane_tag

        run = self._in_flight(day.ds)
        day.adopted = run is not None
        if run is None:
            lane = self._free_lane(day.ds)
            tags = [*self.backfill.tags_of(day.ds), lane_tag(lane)]
            run = create_day_run(self.backfill.dataset, day.ds, list(day.stages), tags)
        day.flow_run, day.flow_run_id = run.name, str(run.id)

    def _free_lane(self, ds: str) -> str:
        """A lane of this backfill, still running, with no day: a new one if none is."""
        ended = self._ended_lanes(self.lanes)
        for lane in self.lanes:
            if lane not in self.serving and lane not in ended:
                self.serving[lane] = ds
                return lane
        lane = f"{self.backfill.id}-{len(self.lanes) + 1}"
        self._start_lane(lane)
        self.lanes.append(lane)
        self.serving[lane] = ds
        return lane

    def _start_lane(self, lane: str) -> None:
        from prefect.deployments import run_deployment

        run_deployment(
            self.deployment,
            parameters={
                "dataset": self.backfill.dataset,
                "backfill": self.backfill.id,
                "lane": lane,
            },
            tags=[self.backfill.tag, f"dataset:{self.backfill.dataset}"],
            timeout=0,
            as_subflow=False,
        )

    def _ended_lanes(self, lanes: Sequence[str]) -> dict[str, str]:
        """Of `lanes`, those whose flow run has ended: key → how (state and message)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        from flows.backfill_lane import lane_run_name

        if not lanes:
            return {}
        names = {lane_run_name(self.backfill.dataset, lane): lane for lane in lanes}
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=list(names)))
            )
        return {
            names[run.name]: f"{run.state.name}: {run.state.message or ''}".strip(": ")
            for run in runs
            if run.state is not None and run.state.is_final()
        }

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
            runs = {
                str(run.id): run
                for run in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
                )
            }
        waiting = {day.ds: runs[day.flow_run_id] for day in days if day.flow_run_id in runs}
        self._rescue_orphans(days, waiting)
        for day in days:
            run = waiting.get(day.ds)
            if run is None or run.state is None or not run.state.is_final():
                continue
            self._free(day.ds)
            recorded = self._recorded(day)
            if run.state.is_completed():
                day.state, day.rows = "succeeded", recorded.get("rows_in")
            else:
                day.state = "failed"
                day.error = recorded.get("error") or f"{run.state.name}: {run.state.message}"

    def _rescue_orphans(self, days: Sequence[DayRun], runs: dict) -> None:
        """Days whose lane ended: not started yet → to another lane; started → failed, and
        their run marked crashed (nothing else would end it)."""
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        from flows.backfill_lane import LANE_TAG, lane_tag

        lane_of = {
            ds: next((t.removeprefix(LANE_TAG) for t in run.tags if t.startswith(LANE_TAG)), None)
            for ds, run in runs.items()
            if run.state is not None and not run.state.is_final()
        }
        ended = self._ended_lanes([lane for lane in lane_of.values() if lane])
        for day in days:
            lane = lane_of.get(day.ds)
            if lane not in ended:
                continue
            run = runs[day.ds]
            self._free(day.ds)
            with get_client(sync_client=True) as client:
                if run.state.is_scheduled():
                    fresh = self._free_lane(day.ds)
                    kept = [t for t in run.tags if not t.startswith(LANE_TAG)]
                    client.update_flow_run(run.id, tags=[*kept, lane_tag(fresh)])
                    continue
                why = f"its backfill lane {lane} ended ({ended[lane]}) while it ran"
                client.set_flow_run_state(run.id, Crashed(message=why), force=True)
            day.state, day.error = "failed", why

    def _free(self, ds: str) -> None:
        self.serving = {lane: held for lane, held in self.serving.items() if held != ds}

    def _recorded(self, day: DayRun) -> dict:
        """The pipeline's ledger row of the day's flow run ({} if it recorded none)."""
        ledger = read_ledger(self.lake, self.backfill.dataset, day.ds)
        mine = ledger[(ledger["run_id"] == day.flow_run_id) & (ledger["stage"] == "pipeline")]
        if mine.empty:
            return {}
        row = mine.iloc[-1].to_dict()
        return {k: (None if v != v else v) for k, v in row.items()}  # NaN → None

    def close(self) -> list[str]:
        """The flow runs still in flight (their lanes go on with them on the workers)."""
        return [day.flow_run for day in self.backfill.days if day.state == "running"]


def run_backfill(
    backfill: Backfill,
    lake: Lake,
    days: InProcessDays | LaneDays,
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
                _rerun_on_transient_error(day)
            if ended or time.monotonic() - recorded_at > HEARTBEAT_SECONDS:
                backfill.record(lake, "running")
                recorded_at = time.monotonic()
        status = "failed" if backfill.failed() else "succeeded"
    finally:
        days.close()
        backfill.record(lake, status)
        on_change(backfill)


def _rerun_on_transient_error(day: DayRun) -> None:
    """Queue a day that failed on a transient Prefect API error again (at most
    RETRIES_OF_A_DAY times)."""
    error = day.error or ""
    transient = any(sign in error for sign in TRANSIENT_API_ERRORS)
    if day.state != "failed" or not transient or len(day.retried_after) >= RETRIES_OF_A_DAY:
        return
    day.retried_after.append(error[:300])
    day.state, day.error, day.flow_run, day.flow_run_id = "queued", None, None, None
