"""Backfill day runs, and the lane that runs them on the work pool.

A backfill's day is a flow run of `pipeline`, created named for the day and tagged (the
backfill, the dataset, the day), then run in an already warm process: the backfill's own
(`--local`) or a lane's. A lane is one flow run of the dataset's `backfill` deployment on
the work pool; it runs the day runs the backfill assigns to it (tagged `lane:{key}`), one
after the other, so a backfill's days pay the process start, the imports and the first
calls' warm-ups once per lane, not once per day. A lane ends when its backfill is no longer
running, or when nothing was assigned to it for `IDLE_EXIT_SECONDS` (its backfill died).

The tags are the flow run's only, not the context's: Prefect asks its API for a
concurrency slot per tag of every task run, which would cost each day dozens of calls.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.sorting import FlowRunSort
from prefect.flow_engine import run_flow
from prefect.states import Scheduled

from flows.pipeline import pipeline
from flows.resources import check_storage, lake_of
from flows.settings import current_settings
from tasks.ledger import backfill_records

LANE_TAG = "lane:"
IDLE_EXIT_SECONDS = 60.0
POLL_SECONDS = 0.5
LEDGER_CHECK_SECONDS = 5.0


def day_run_name(dataset: str, ds: str) -> str:
    return f"pipeline-{dataset}-{ds}"


def create_day_run(dataset: str, ds: str, stages: list[str], tags: list[str]) -> FlowRun:
    """A scheduled `pipeline` flow run of (dataset, ds, stages), named for the day and
    tagged `tags`, for `run_day` to run."""
    with get_client(sync_client=True) as client:
        return client.create_flow_run(
            pipeline,
            name=day_run_name(dataset, ds),
            parameters={"dataset": dataset, "ds": ds, "stages": stages},
            tags=tags,
            state=Scheduled(),
        )


def run_day(day_run: FlowRun) -> State:
    """Run the created day run in this process; its final state (a failure is returned,
    not raised)."""
    return run_flow(pipeline, flow_run=day_run, parameters=day_run.parameters, return_type="state")


def lane_tag(lane: str) -> str:
    return f"{LANE_TAG}{lane}"


def lane_run_name(dataset: str, lane: str) -> str:
    return f"backfill-lane-{dataset}-{lane}"


def next_assigned(lane: str) -> FlowRun | None:
    """The oldest day run assigned to `lane` that has not started."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[lane_tag(lane)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"])),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )
    return runs[0] if runs else None


@flow(name="backfill-lane", flow_run_name="backfill-lane-{dataset}-{lane}")
def backfill_lane(dataset: str, backfill: str, lane: str) -> int:
    """Run the day runs backfill `backfill` assigns to lane `lane` of `dataset`, one after
    the other, until the backfill ends (or assigns nothing for IDLE_EXIT_SECONDS); the
    number of days run."""
    settings = current_settings()
    check_storage(settings)
    lake = lake_of(settings)
    ran, idle_since, checked_at = 0, time.monotonic(), 0.0
    while time.monotonic() - idle_since < IDLE_EXIT_SECONDS:
        assigned = next_assigned(lane)
        if assigned is not None:
            run_day(assigned)
            ran, idle_since = ran + 1, time.monotonic()
            continue
        if time.monotonic() - checked_at > LEDGER_CHECK_SECONDS:
            if not _backfill_running(lake, dataset, backfill):
                break
            checked_at = time.monotonic()
        time.sleep(POLL_SECONDS)
    return ran


def _backfill_running(lake, dataset: str, backfill: str) -> bool:
    """Whether the ledger's latest record of the backfill says it is running."""
    mine = [record for record in backfill_records(lake, dataset) if record["run_id"] == backfill]
    return bool(mine) and mine[-1]["status"] == "running"
