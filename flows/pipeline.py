"""The daily pipeline of one partition: ingest → validate → score → monitor (→ shadow while
a challenger is on trial) → account."""

from __future__ import annotations

from prefect import flow

from datasets import get_dataset
from flows.ingest import ingest
from flows.labels import ingest_labels, labels_landed
from flows.monitor import monitor
from flows.resources import (
    RUN_END_HOOKS,
    cluster_spec_of,
    current_run_id,
    dask_address_of,
    lake_of,
    pipeline_run_name,
    registry_of,
    scheduled_day,
)
from flows.score import score
from flows.settings import current_settings
from flows.shadow import shadow
from flows.train import train
from flows.validate import validate
from reports import artifact_key, publish_markdown, stage_summary_markdown
from tasks.accounting import check_accounting, count_rows
from tasks.cluster import dask_task_runner
from tasks.ledger import day_stages, ledger_stage
from tasks.registry import champion_version
from tasks.schema_evolution import REBUILT_FROM, migrate_tables


@flow(name="pipeline", flow_run_name=pipeline_run_name, **RUN_END_HOOKS)
def pipeline(dataset: str, ds: str | None = None) -> dict:
    """Run every stage for (dataset, ds) and check that every landed row is accounted for.

    `ds` defaults to the day before the run's scheduled start. Without a champion model
    yet, one is trained on this day's silver rows first.
    """
    settings, ds = current_settings(), scheduled_day(ds)
    lake, run_id = lake_of(settings), current_run_id()
    with ledger_stage(lake, dataset, ds, "pipeline", run_id) as entry:
        migrate_tables(lake, get_dataset(dataset), list(REBUILT_FROM))  # before any write
        landed = ingest(dataset, ds)
        validate(dataset, ds)
        if labels_landed(settings, dataset, ds):
            ingest_labels(dataset, ds)
        champion = champion_version(registry_of(settings), dataset)
        if champion is None:
            champion = train(dataset, [ds])
        runner = dask_task_runner(dask_address_of(settings), cluster_spec_of(settings))
        scored = score.with_options(task_runner=runner)(dataset, ds)
        champion = scored["model_version"]  # what the day was scored with
        monitored = monitor(dataset, ds, champion)
        challenger = _role(scored["models"], "challenger")
        shadowed = shadow(dataset, ds, champion, challenger) if challenger else None
        account = count_rows(lake, dataset, ds, landed["landed"], champion)
        publish_markdown(
            stage_summary_markdown(dataset, ds, day_stages(lake, dataset, ds), account.as_dict()),
            key=artifact_key(f"summary-{dataset}-{ds}"),
            description=f"Stages and row accounting of {dataset} ds={ds}",
        )
        check_accounting(account)
        entry.rows_in = landed["landed"]
        entry.rows_out = scored["scored"]
        entry.model_version = champion
        entry.verdict = monitored["verdict"]
        entry.report = monitored["report"]
        entry.details = {"accounting": account.as_dict()} | (
            {"shadow": {"challenger": challenger, "decision": shadowed["decision"]}}
            if shadowed
            else {}
        )
    return account.as_dict() | {
        "verdict": monitored["verdict"],
        "report": monitored["report"],
        "retrain_requested": monitored.get("retrain_requested"),
        "shadow": shadowed and {"challenger": challenger} | shadowed,
    }


def _role(models: dict[str, str], role: str) -> str | None:
    return next((version for version, named in models.items() if named == role), None)
