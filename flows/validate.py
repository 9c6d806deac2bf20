"""Validate: lake/bronze → lake/silver (valid, typed) + lake/quarantine (failed checks)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.resources import RUN_END_HOOKS, current_run_id, lake_of
from flows.settings import current_settings
from reports import artifact_key, publish_markdown, validation_markdown
from tasks.ledger import ledger_stage
from tasks.schema_evolution import migrate_tables
from tasks.validation import check_quarantine_limit, commit_validated, stage_validated


@flow(name="validate", flow_run_name="validate-{dataset}-{ds}", **RUN_END_HOOKS)
def validate(dataset: str, ds: str, max_quarantine_fraction: float | None = None) -> dict:
    """Split the day's bronze rows by the dataset's schema; fail past the quarantine limit
    (the settings' limit unless `max_quarantine_fraction` overrides it for this run)."""
    settings = current_settings()
    limit = settings.max_quarantine_fraction
    limit = limit if max_quarantine_fraction is None else max_quarantine_fraction
    lake, run_id = lake_of(settings), current_run_id()
    with ledger_stage(lake, dataset, ds, "validate", run_id) as entry:
        spec = get_dataset(dataset)
        migrated = migrate_tables(lake, spec, ["silver", "quarantine"])
        staged = stage_validated(lake, spec, ds, run_id)
        entry.rows_in = staged.rows_in
        entry.rows_out = staged.silver_count
        entry.rows_diverted = staged.quarantined_count
        entry.details = {"failed_checks": staged.failed_checks()} | (
            {"columns_added": migrated} if migrated else {}
        )
        entry.delta_versions = commit_validated(lake, spec, ds, staged, run_id)
        publish_markdown(
            validation_markdown(
                dataset,
                ds,
                entry.rows_in,
                entry.rows_out,
                staged.failed_checks(),
                staged.samples,
                limit,
            ),
            key=artifact_key(f"validation-{dataset}-{ds}"),
            description=f"Validation of {dataset} ds={ds}",
        )
        get_run_logger().info(
            "%s ds=%s: %d valid, %d quarantined", dataset, ds, entry.rows_out, entry.rows_diverted
        )
        check_quarantine_limit(staged, dataset, ds, limit)
    return {"silver": entry.rows_out, "quarantine": entry.rows_diverted}
