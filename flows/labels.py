"""Labels: landing/{dataset}-labels/ds={ds}/ → lake/labels/{dataset} (outcomes that land late)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.monitor import monitor
from flows.resources import RUN_END_HOOKS, current_run_id, lake_of, store_of
from flows.settings import current_settings
from tasks.bronze import UnreadableFiles
from tasks.labels import build_labels, labelled_days, labels_feed, write_labels
from tasks.landing import fetch_partition, landed_days
from tasks.ledger import last_succeeded, ledger_stage
from tasks.schema_evolution import migrate_tables


def labels_landed(settings, dataset: str, ds: str) -> bool:
    """Whether the labels feed has a partition for day `ds`."""
    feed = labels_feed(dataset)
    return ds in landed_days(settings.landing_uri, feed, store_of(settings))


@flow(name="labels", flow_run_name="labels-{dataset}-{ds}", **RUN_END_HOOKS)
def ingest_labels(dataset: str, ds: str) -> dict:
    """Read every labels file that landed on day `ds` and replace that day's labels."""
    settings = current_settings()
    lake, run_id = lake_of(settings), current_run_id()
    with ledger_stage(lake, dataset, ds, "labels", run_id) as entry:
        spec = get_dataset(dataset)
        migrate_tables(lake, spec, ["labels"])
        contents, markers = fetch_partition(  # a day's labels are read whole
            settings.landing_uri, labels_feed(dataset), ds, store_of(settings), whole_below=None
        )
        batch = build_labels(contents, spec, ds, run_id)
        entry.files = batch.files
        if batch.unreadable:
            raise UnreadableFiles(f"{labels_feed(dataset)} ds={ds}: " + "; ".join(batch.unreadable))
        entry.rows_in = batch.landed_rows
        entry.rows_out = batch.usable_rows
        entry.rows_diverted = batch.unusable_rows
        entry.delta_versions = {"labels": write_labels(lake, dataset, ds, batch, run_id)}
        recomputed = recompute_monitored_days(lake, dataset, labelled_days(lake, spec, batch), ds)
        entry.details = {"markers_skipped": markers, "recomputed_days": recomputed}
    get_run_logger().info(
        "%s ds=%s: %d labels landed, %d usable; recomputed the monitoring of %s",
        dataset,
        ds,
        entry.rows_in,
        entry.rows_out,
        ", ".join(recomputed) or "no earlier day",
    )
    return {
        "labels": entry.rows_in,
        "usable": entry.rows_out,
        "unusable": entry.rows_diverted,
        "recomputed_days": recomputed,
    }


def recompute_monitored_days(lake, dataset: str, days: list[str], labels_ds: str) -> list[str]:
    """Re-run the monitoring of each monitored day of `days` with the model that monitored
    it, now that labels for its rows landed; returns the days recomputed."""
    recomputed = []
    for day in days:
        monitored = last_succeeded(lake, dataset, day, "monitor")
        if monitored is None or not monitored.get("model_version"):
            continue
        monitor(dataset, day, monitored["model_version"], recompute=f"labels landed on {labels_ds}")
        recomputed.append(day)
    return recomputed
