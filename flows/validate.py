"""Validate: lake/bronze → lake/silver (valid, typed) + lake/quarantine (failed checks)."""

from __future__ import annotations

import pyarrow as pa
from prefect import flow

from datasets import get_dataset
from flows.resources import current_run_id, lake_of
from flows.settings import Settings
from tasks.bronze import bronze_schema
from tasks.lake import read_slice
from tasks.ledger import ledger_stage
from tasks.validation import check_quarantine_limit, split_valid_rows, write_validated


@flow(name="validate", flow_run_name="validate-{dataset}-{ds}")
def validate(dataset: str, ds: str, settings: Settings | None = None) -> dict:
    """Split the day's bronze rows by the dataset's schema; fail past the quarantine limit."""
    settings = settings or Settings()
    spec, lake, run_id = get_dataset(dataset), lake_of(settings), current_run_id()
    with ledger_stage(lake, dataset, ds, "validate", run_id) as entry:
        bronze = read_slice(lake, "bronze", dataset, ds)
        split = split_valid_rows(bronze, spec)
        entry.rows_in = len(bronze)
        entry.rows_out = len(split.silver)
        entry.rows_diverted = len(split.quarantine)
        entry.details = {"failed_checks": split.failed_checks()}
        schema: pa.Schema = bronze_schema(spec.columns)
        entry.delta_versions = write_validated(lake, spec, ds, split, schema, run_id)
        check_quarantine_limit(split, dataset, ds, settings.max_quarantine_fraction)
    return {"silver": entry.rows_out, "quarantine": entry.rows_diverted}
