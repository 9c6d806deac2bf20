"""Moving the `champion` alias: promote a version, or roll back to an earlier one; and
retiring a challenger. Each decision tags the versions in the registry and writes one
ledger row (stage `promote`, `rollback` or `retire`; ds = the day that decided, else today
UTC), so the CLI and the pipeline decide the same way."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tasks.lake import Lake
from tasks.ledger import LedgerEntry, record_entry
from tasks.registry import ModelRegistry

STATUS_TAG = "tidewater.status"
PREVIOUS_TAG = "tidewater.previous_champion"


def promote(
    registry: ModelRegistry,
    lake: Lake,
    dataset: str,
    version: str,
    reason: str = "",
    by: str = "cli",
    run_id: str | None = None,
    ds: str | None = None,
) -> tuple[str | None, str]:
    """Name `version` champion (it must exist), clear a challenger alias naming it, record
    the previous champion on it, retire the previous one. Returns (old, new)."""
    return _move_champion(registry, lake, dataset, version, reason, by, run_id, "promote", ds)


def retire(
    registry: ModelRegistry,
    lake: Lake,
    dataset: str,
    version: str,
    reason: str = "",
    by: str = "cli",
    run_id: str | None = None,
    ds: str | None = None,
) -> None:
    """Take the challenger alias off `version` (if it names it) and tag it retired, with
    the reason; the champion stays as it is."""
    registry.card(dataset, version)  # FileNotFoundError naming dataset and version
    now = datetime.now(UTC)
    if registry.alias(dataset, "challenger") == version:
        registry.delete_alias(dataset, "challenger")
    registry.set_version_tags(
        dataset,
        version,
        {
            STATUS_TAG: "retired",
            "tidewater.retired_at": now.isoformat(),
            "tidewater.retired_because": reason[:4000],
            "tidewater.by": by,
        },
    )
    record_entry(
        lake,
        LedgerEntry(
            dataset=dataset,
            ds=ds or now.date().isoformat(),
            stage="retire",
            run_id=run_id or f"{by}-{uuid.uuid4().hex[:12]}",
            started_at=now,
            model_version=version,
            verdict="retire",
            details={"version": version, "by": by, "reason": reason},
        ),
    )


def rollback(
    registry: ModelRegistry,
    lake: Lake,
    dataset: str,
    version: str | None = None,
    reason: str = "",
    by: str = "cli",
    run_id: str | None = None,
    ds: str | None = None,
) -> tuple[str | None, str]:
    """Move the champion back to `version`, by default to the champion the current one
    replaced (the tag recorded when it was promoted). Returns (old, new)."""
    if version is None:
        current = registry.alias(dataset, "champion")
        if current is None:
            raise LookupError(f"no champion model for {dataset}: nothing to roll back")
        version = registry.version_tags(dataset, current).get(PREVIOUS_TAG)
        if not version:
            raise LookupError(
                f"{dataset} champion {current} records no previous champion: name a version"
            )
    return _move_champion(registry, lake, dataset, version, reason, by, run_id, "rollback", ds)


def _move_champion(
    registry: ModelRegistry,
    lake: Lake,
    dataset: str,
    version: str,
    reason: str,
    by: str,
    run_id: str | None,
    stage: str,
    ds: str | None = None,
) -> tuple[str | None, str]:
    registry.card(dataset, version)  # FileNotFoundError naming dataset and version
    now = datetime.now(UTC)
    old = registry.alias(dataset, "champion")
    entry = LedgerEntry(
        dataset=dataset,
        ds=ds or now.date().isoformat(),
        stage=stage,
        run_id=run_id or f"{by}-{uuid.uuid4().hex[:12]}",
        started_at=now,
        model_version=version,
        verdict=stage,
        details={"from": old, "to": version, "by": by, "reason": reason},
    )
    registry.set_alias(dataset, "champion", version)
    if registry.alias(dataset, "challenger") == version:
        registry.delete_alias(dataset, "challenger")
    stamp = now.isoformat()
    new_tags = {STATUS_TAG: "champion", "tidewater.champion_since": stamp, "tidewater.by": by}
    if old and old != version:
        new_tags[PREVIOUS_TAG] = old
        replaced = "retired" if stage == "promote" else "rolled_back"
        registry.set_version_tags(
            dataset,
            old,
            {
                STATUS_TAG: replaced,
                f"tidewater.{replaced}_at": stamp,
                "tidewater.replaced_by": version,
            },
        )
    registry.set_version_tags(dataset, version, new_tags)
    record_entry(lake, entry)
    return old, version
