"""The daily pipeline of one partition: ingest → validate → score → monitor (→ shadow while
a challenger is on trial) → account. A repair or backfill runs some stages only, reusing
what the ledger says the others did."""

from __future__ import annotations

from prefect import flow

from datasets import get_dataset
from flows.ingest import ingest
from flows.labels import ingest_labels, labels_landed
from flows.monitor import monitor
from flows.resources import (
    RUN_END_HOOKS,
    backfill_of_run,
    check_storage,
    cluster_spec_of,
    current_run_id,
    dask_address_of,
    lake_of,
    pipeline_run_name,
    registry_of,
    scheduled_day,
    subflows_on_this_heartbeat,
)
from flows.score import score
from flows.settings import current_settings
from flows.shadow import shadow
from flows.train import train
from flows.validate import validate
from reports import (
    artifact_key,
    import_report_libraries_in_background,
    publish_markdown,
    stage_summary_markdown,
)
from tasks.accounting import check_accounting, count_rows
from tasks.backfill import PIPELINE_STAGES, with_dependents
from tasks.cluster import dask_task_runner, report_task_runner
from tasks.concurrency import scoring_slot
from tasks.ledger import day_stages, ledger_stage
from tasks.registry import champion_version
from tasks.schema_evolution import REBUILT_FROM, migrate_tables


class StageNotDone(RuntimeError):
    """A stage the run reuses never succeeded for the day."""


@flow(name="pipeline", flow_run_name=pipeline_run_name, **RUN_END_HOOKS)
def pipeline(dataset: str, ds: str | None = None, stages: list[str] | None = None) -> dict:
    """Run the stages of (dataset, ds) and check that every landed row is accounted for.

    `ds` defaults to the day before the run's scheduled start. `stages` (default: all of
    ingest, validate, score, monitor) runs those and every stage after them, and reuses
    what the ledger records of the others, which must have succeeded. Without a champion
    model yet, one is trained on this day's silver rows before scoring.
    """
    settings, ds = current_settings(), scheduled_day(ds)
    check_storage(settings)
    registry_of(settings).open_in_background()  # read before scoring, ready by then
    lake, run_id = lake_of(settings), current_run_id()
    todo = with_dependents(stages) if stages is not None else PIPELINE_STAGES
    with ledger_stage(lake, dataset, ds, "pipeline", run_id) as entry, subflows_on_this_heartbeat():
        migrate_tables(lake, get_dataset(dataset), list(REBUILT_FROM))  # before any write
        if "ingest" in todo:
            landed = ingest(dataset, ds)["landed"]
            if labels_landed(settings, dataset, ds):
                ingest_labels(dataset, ds)
        else:
            landed = _reused(lake, dataset, ds, "ingest")["rows_in"]
        if "validate" in todo:
            validate(dataset, ds)
        else:
            _reused(lake, dataset, ds, "validate")
        address = dask_address_of(settings)
        if "score" in todo:
            if champion_version(registry_of(settings), dataset) is None:
                train(dataset, [ds])
            if "monitor" in todo and not address:  # its report is built in this process:
                import_report_libraries_in_background()  # imported while the Dask workers score
            runner = dask_task_runner(address, cluster_spec_of(settings))
            with scoring_slot(backfill=backfill_of_run() is not None):
                scored = score.with_options(task_runner=runner)(dataset, ds)
        else:
            recorded = _reused(lake, dataset, ds, "score")
            scored = {"scored": recorded["rows_out"], "model_version": recorded["model_version"]}
            scored["models"] = {}  # no challenger scored by this run: no shadow day
        champion = scored["model_version"]  # what the day was scored with
        # the accounting reads every table's ids (in Arrow and numpy, mostly off the GIL):
        # on a thread, while the monitor waits for its workers
        accounting = count_rows.submit(lake, dataset, ds, landed, champion)
        if "monitor" in todo:
            monitored = monitor.with_options(task_runner=report_task_runner(address))(
                dataset, ds, champion
            )
        else:
            recorded = _reused(lake, dataset, ds, "monitor")
            monitored = {"verdict": recorded["verdict"], "report": recorded["report"]}
        challenger = _role(scored["models"], "challenger")
        shadowed = shadow(dataset, ds, champion, challenger) if challenger else None
        account = accounting.result()
        publish_markdown(
            stage_summary_markdown(dataset, ds, day_stages(lake, dataset, ds), account.as_dict()),
            key=artifact_key(f"summary-{dataset}-{ds}"),
            description=f"Stages and row accounting of {dataset} ds={ds}",
        )
        check_accounting(account)
        entry.rows_in = landed
        entry.rows_out = scored["scored"]
        entry.model_version = champion
        entry.verdict = monitored["verdict"]
        entry.report = monitored["report"]
        entry.details = {"accounting": account.as_dict(), "stages": list(todo)} | (
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


def _reused(lake, dataset: str, ds: str, stage: str) -> dict:
    """The ledger row of the day's latest run of `stage`, which this run reuses: it must
    have succeeded."""
    latest = {row["stage"]: row for row in day_stages(lake, dataset, ds)}.get(stage)
    if latest is None or latest["status"] != "succeeded":
        how = "never ran" if latest is None else f"last {latest['status']}"
        raise StageNotDone(
            f"{stage} of {dataset} ds={ds} {how}: rerun it too (tidewater repair {dataset} "
            f"--ds {ds} reruns what did not succeed)"
        )
    return latest


def _role(models: dict[str, str], role: str) -> str | None:
    return next((version for version, named in models.items() if named == role), None)
