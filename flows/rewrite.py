"""Rewrite: rebuild a dataset's tables from their sources under its current declaration."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.ingest import ingest
from flows.labels import ingest_labels
from flows.resources import check_storage, lake_of, store_of
from flows.settings import current_settings
from flows.validate import validate
from tasks.labels import labels_feed
from tasks.landing import landed_days
from tasks.schema_evolution import REBUILT_FROM, declared_schemas, table_changes

DERIVED_FROM = {
    "bronze": ("silver", "quarantine"),
    "silver": ("quarantine",),
    "quarantine": ("silver",),
}
"""Rebuilding a table rebuilds what is derived from it (validate writes silver and
quarantine together)."""


class RewriteIncomplete(RuntimeError):
    """Some days failed while their tables were rebuilt (the others are rebuilt)."""


@flow(name="rewrite", flow_run_name="rewrite-{dataset}")
def rewrite(dataset: str, tables: list[str] | None = None) -> dict[str, list[str]]:
    """Empty `tables` (default: those whose schema no longer matches the declaration) and
    what derives from them, then re-run the stages that fill them for every day: ingest
    from the landing zone, validate from bronze, labels from the labels feed. Returns the
    days rebuilt per table. Predictions are kept (row ids do not change)."""
    settings = current_settings()
    check_storage(settings)
    lake, store = lake_of(settings), store_of(settings)
    spec = get_dataset(dataset)
    unknown = sorted(set(tables or ()) - set(REBUILT_FROM))
    if unknown:
        raise ValueError(f"cannot rewrite {unknown}: rewritable tables are {list(REBUILT_FROM)}")
    chosen = set(tables or [c.table for c in table_changes(lake, spec, list(REBUILT_FROM))])
    for table in list(chosen):
        chosen.update(DERIVED_FROM.get(table, ()))
    if not chosen:
        get_run_logger().info(
            "%s: every table matches its declaration; nothing to rewrite", dataset
        )
        return {}
    validated_days = lake.partition_values("bronze", dataset)
    declared = declared_schemas(spec)
    for table in sorted(chosen):
        lake.reset_table(table, dataset, declared[table], partition_by=["ds"])
    rebuilt: dict[str, list[str]] = {}
    failed: list[str] = []

    def each_day(stage, days: list[str]) -> list[str]:
        for ds in days:
            try:
                stage(dataset, ds)
            except Exception as error:  # noqa: BLE001 - the ledger has it; the next day runs
                failed.append(f"{stage.name} ds={ds}: {type(error).__name__}: {error}")
        return days

    if "bronze" in chosen:
        validated_days = each_day(ingest, landed_days(settings.landing_uri, dataset, store))
        rebuilt["bronze"] = validated_days
    if "silver" in chosen:
        rebuilt["silver"] = rebuilt["quarantine"] = each_day(validate, validated_days)
    if "labels" in chosen:
        feed = landed_days(settings.landing_uri, labels_feed(dataset), store)
        rebuilt["labels"] = each_day(ingest_labels, feed)
    get_run_logger().info("%s rewritten: %s", dataset, {t: len(d) for t, d in rebuilt.items()})
    if failed:
        raise RewriteIncomplete(f"{dataset}: {len(failed)} day(s) failed: " + " | ".join(failed))
    return rebuilt
