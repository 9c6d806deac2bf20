"""Ingest: landing/{dataset}/ds={ds}/ → lake/bronze/{dataset} + lake/rejects/{dataset}."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.resources import RUN_END_HOOKS, current_run_id, lake_of, store_of
from flows.settings import current_settings
from tasks.bronze import UnreadableFiles, build_partition, relanded_changes, write_partition
from tasks.landing import fetch_partition, without_duplicates
from tasks.ledger import ingested_elsewhere, last_succeeded, ledger_stage
from tasks.schema_evolution import migrate_tables


@flow(name="ingest", flow_run_name="ingest-{dataset}-{ds}", **RUN_END_HOOKS)
def ingest(dataset: str, ds: str) -> dict:
    """Parse every landed file of the day, stamp lineage, replace the day in bronze."""
    settings = current_settings()
    lake, run_id = lake_of(settings), current_run_id()
    with ledger_stage(lake, dataset, ds, "ingest", run_id) as entry:
        spec = get_dataset(dataset)
        migrated = migrate_tables(lake, spec, ["bronze"])
        previous = last_succeeded(lake, dataset, ds, "ingest")
        contents, markers = fetch_partition(settings.landing_uri, dataset, ds, store_of(settings))
        hidden_data = [name for name in markers if spec.landing.kind_of(name) is not None]
        if hidden_data:  # skipped by the hidden/marker convention, though they look like data
            get_run_logger().warning(
                "ds=%s: skipped as hidden or marker files: %s (rename them to load them)",
                ds,
                ", ".join(hidden_data),
            )
        duplicates = []
        if settings.duplicate_files == "skip":
            elsewhere = ingested_elsewhere(lake, dataset, ds)
            contents, duplicates = without_duplicates(contents, elsewhere)
            for duplicate in duplicates:
                get_run_logger().warning(
                    "ds=%s: %s not ingested: same bytes as %s",
                    ds,
                    duplicate["path"],
                    duplicate["same_as"],
                )
        labels_apart = (spec.roles.target,)  # features may land before their labels
        batch = build_partition(
            contents, dataset, spec.columns, ds, run_id, spec.landing, labels_apart
        )
        entry.files = batch.files + duplicates  # every landed file, the duplicates marked
        if batch.unreadable:
            raise UnreadableFiles(f"{dataset} ds={ds}: " + "; ".join(batch.unreadable))
        entry.rows_in = batch.landed_rows
        entry.rows_out = batch.bronze.num_rows
        entry.rows_diverted = batch.rejects.num_rows
        changes = relanded_changes(previous and previous["files"], batch.files)
        if changes:
            get_run_logger().warning("ds=%s was re-landed with different files: %s", ds, changes)
        entry.details = {"relanded": changes, "markers_skipped": markers} | (
            {"columns_added": migrated} if migrated else {}
        )
        entry.delta_versions = write_partition(lake, dataset, ds, batch, run_id)
    get_run_logger().info(
        "%s ds=%s: %d landed, %d to bronze, %d rejected",
        dataset,
        ds,
        entry.rows_in,
        entry.rows_out,
        entry.rows_diverted,
    )
    return {"landed": entry.rows_in, "bronze": entry.rows_out, "rejects": entry.rows_diverted}
