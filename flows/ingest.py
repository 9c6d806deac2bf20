"""Ingest: landing/{dataset}/ds={ds}/ → lake/bronze/{dataset} + lake/rejects/{dataset}."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.resources import RUN_END_HOOKS, current_run_id, lake_of, store_of
from flows.settings import current_settings
from tasks.bronze import UnreadableFiles, relanded_changes, stage_partition, write_partition
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
        staged = stage_partition(lake, contents, dataset, spec.columns, ds, run_id,
                                 spec.landing, labels_apart, store_of(settings))  # fmt: skip
        entry.files = staged.files + duplicates  # every landed file, the duplicates marked
        if staged.unreadable:  # nothing is committed: the staged files stay invisible
            raise UnreadableFiles(f"{dataset} ds={ds}: " + "; ".join(staged.unreadable))
        entry.rows_in = staged.landed_rows
        entry.rows_out = staged.bronze_rows
        entry.rows_diverted = staged.rejected_rows
        changes = relanded_changes(previous and previous["files"], staged.files)
        if changes:
            get_run_logger().warning("ds=%s was re-landed with different files: %s", ds, changes)
        entry.details = {"relanded": changes, "markers_skipped": markers} | (
            {"columns_added": migrated} if migrated else {}
        )
        entry.delta_versions = write_partition(lake, dataset, spec.columns, ds, staged, run_id)
    get_run_logger().info(
        "%s ds=%s: %d landed, %d to bronze, %d rejected",
        dataset,
        ds,
        entry.rows_in,
        entry.rows_out,
        entry.rows_diverted,
    )
    return {"landed": entry.rows_in, "bronze": entry.rows_out, "rejects": entry.rows_diverted}
