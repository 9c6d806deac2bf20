"""What `tidewater deploy` applies to the Prefect API: the work pool, per registered
dataset a daily deployment (cron) and a retrain deployment whose trigger answers the
monitor's retrain requests (an automation), and the alert automations.

Deployments are generated from the dataset registry, so adding a dataset module is all it
takes; their entrypoints are module paths of the installed package, so a worker started
from the project's environment runs them with no working directory or pull step. Applying
is idempotent: deployments are upserted by name, automations replaced by name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron

from reports import BREACH_EVENT, RETRAIN_EVENT
from tasks.concurrency import ensure_scoring_limits

DAILY_CRON = "0 2 * * *"
ALERT_BLOCK = "tidewater-alerts"
# Alerts on the runs an operator starts or schedules; a failed stage fails its pipeline.
ALERTED_FLOWS = ("pipeline", "train", "retrain")


@dataclass(frozen=True)
class Applied:
    work_pool: str
    deployments: list[str]
    automations: list[str]
    triggers: list[str]


def retrain_trigger(dataset: str) -> DeploymentEventTrigger:
    """Run the retrain deployment of `dataset` on each retrain request the monitor emits for
    it, with the request's window, reasons, day and event id as the run's parameters."""
    return DeploymentEventTrigger(
        name=f"tidewater: retrain {dataset} when requested",
        expect={RETRAIN_EVENT},
        match={"prefect.resource.id": f"tidewater.dataset.{dataset}"},
        posture=Posture.Reactive,
        threshold=1,
        parameters={
            "dataset": dataset,
            "days": "{{ event.payload.days }}",
            "reasons": "{{ event.payload.reasons }}",
            "requested_on": "{{ event.payload.ds }}",
            # a plain-Jinja parameter renders as text: Prefect wraps a lone `{{ ... }}` in
            # `| tojson`, which cannot serialise the event's UUID (the action then fails)
            "event_id": {"__prefect_kind": "jinja", "template": "{{ event.id }}"},
        },
    )


def build_deployments(datasets: list[str]) -> list[RunnerDeployment]:
    """Per dataset: `{name}-daily` (yesterday's partition at 02:00 UTC), `{name}-retrain`
    (run by its trigger on each retrain request, or by hand) and `{name}-backfill` (the
    lanes `tidewater backfill` starts)."""
    from flows.backfill_lane import backfill_lane
    from flows.pipeline import pipeline
    from flows.retrain import retrain

    deployments = []
    for name in datasets:
        deployments.append(
            RunnerDeployment.from_flow(
                pipeline,
                name=f"{name}-daily",
                description=f"Daily pipeline of {name}: yesterday's partition, or a given ds.",
                parameters={"dataset": name},
                schedules=[Cron(DAILY_CRON, timezone="UTC")],
                tags=[name, "daily"],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
        deployments.append(
            RunnerDeployment.from_flow(
                retrain,
                name=f"{name}-retrain",
                description=(
                    f"Retrain {name} on a requested window (default: the retrain policy's "
                    "latest validated days); the candidate becomes the challenger if it "
                    "passes the quality and fairness gate."
                ),
                parameters={"dataset": name},
                triggers=[retrain_trigger(name)],
                tags=[name, "retrain"],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
        deployments.append(
            RunnerDeployment.from_flow(
                backfill_lane,
                name=f"{name}-backfill",
                description=(
                    f"A lane of a backfill of {name}: runs the days `tidewater backfill` "
                    "assigns to it, one after the other in one process."
                ),
                parameters={"dataset": name},
                tags=[name, "backfill"],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def ensure_work_pool(name: str) -> None:
    """Create the process work pool `name` unless it exists."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def alert_automations(block_id) -> list[Automation]:
    """A notification for every failed or crashed pipeline or training run, and for every
    breached monitoring threshold (the event the monitor emits)."""
    notify = SendNotification(
        block_document_id=block_id,
        subject="tidewater: {{ event.event }} {{ event.resource.get('prefect.resource.name') }}",
        body=(
            "{{ event.event }} at {{ event.occurred }}\n"
            "resource: {{ event.resource.id }} {{ event.resource.get('prefect.resource.name') }}\n"
            "{{ event.payload }}"
        ),
    )
    failed_runs = EventTrigger(
        expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={
            "prefect.resource.role": "flow",
            "prefect.resource.name": list(ALERTED_FLOWS),
        },
        posture=Posture.Reactive,
        threshold=1,
    )
    breached = EventTrigger(
        expect={BREACH_EVENT},
        match={"prefect.resource.id": "tidewater.dataset.*"},
        posture=Posture.Reactive,
        threshold=1,
    )
    return [
        Automation(name="tidewater: run failed", trigger=failed_runs, actions=[notify]),
        Automation(name="tidewater: threshold breached", trigger=breached, actions=[notify]),
    ]


def apply_alerts(webhook_url: str) -> list[str]:
    """Save the webhook block and (re)create the alert automations that post to it."""
    block = CustomWebhookNotificationBlock(
        name="tidewater",
        url=webhook_url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    block_id = block.save(ALERT_BLOCK, overwrite=True)
    names = []
    for automation in alert_automations(block_id):
        with contextlib.suppress(ValueError):
            Automation.read(name=automation.name).delete()
        names.append(automation.create().name)
    return names


def apply_all(
    datasets: list[str], work_pool: str, webhook_url: str | None, scoring_slots: int
) -> Applied:
    """Work pool, scoring limits, deployments, and (when a webhook is configured) alert
    automations."""
    ensure_work_pool(work_pool)
    ensure_scoring_limits(scoring_slots)
    names, triggers = [], []
    for deployment in build_deployments(datasets):
        deployment.apply(work_pool_name=work_pool)  # replaces the deployment's triggers too
        names.append(f"{deployment.flow_name}/{deployment.name}")
        triggers += [trigger.name for trigger in deployment.triggers]
    automations = apply_alerts(webhook_url) if webhook_url else []
    return Applied(work_pool, names, automations, triggers)
