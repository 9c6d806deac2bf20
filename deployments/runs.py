"""Following the flow runs an automation starts: the retrain run a retrain request caused."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TriggeredRun:
    """A flow run an event caused, how long after the event it started, and how it ended."""

    name: str
    flow_run_id: str
    state: str
    started_after_seconds: float | None
    ran_seconds: float | None

    @property
    def succeeded(self) -> bool:
        return self.state == "Completed"


def wait_for_triggered_run(
    deployment: str,
    event_id: str,
    requested_at: datetime,
    timeout_seconds: float = 600,
    created_within_seconds: float = 60,
) -> TriggeredRun:
    """Wait until the run of `deployment` ("flow/deployment") whose `event_id` parameter is
    `event_id` has ended (it is created by the deployment's trigger, then run by a worker).
    TimeoutError when the trigger created no run within `created_within_seconds`, or the run
    has not ended after `timeout_seconds`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    started = time.monotonic()
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                limit=50,
            )
            mine = [run for run in runs if (run.parameters or {}).get("event_id") == event_id]
            if mine and mine[0].state and mine[0].state.is_final():
                return _described(mine[0], requested_at)
            waited = time.monotonic() - started
            if not mine and waited > created_within_seconds:
                raise TimeoutError(
                    f"the trigger of {deployment} created no run for event {event_id} within "
                    f"{created_within_seconds:.0f} s: see the automation's events in the "
                    "Prefect UI (Automations) and the server log"
                )
            if waited > timeout_seconds:
                raise TimeoutError(
                    f"the run of {deployment} for event {event_id} did not end within "
                    f"{timeout_seconds:.0f} s: is a worker running on the work pool "
                    "(tidewater serve)?"
                )
            time.sleep(1.0)


def _described(run, requested_at: datetime) -> TriggeredRun:
    started = run.start_time
    ended = run.end_time
    return TriggeredRun(
        name=run.name,
        flow_run_id=str(run.id),
        state=run.state.name,
        started_after_seconds=(started - requested_at).total_seconds() if started else None,
        ran_seconds=(ended - started).total_seconds() if started and ended else None,
    )
