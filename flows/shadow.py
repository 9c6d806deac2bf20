"""Shadow: the challenger beside the champion on a real batch, and after the shadow window
the decision to promote it or retire it."""

from __future__ import annotations

from prefect import flow, get_run_logger

from datasets import get_dataset
from flows.resources import (
    RUN_END_HOOKS,
    current_run_id,
    lake_of,
    registry_of,
    store_of,
)
from flows.settings import current_settings
from reports import artifact_key, publish_markdown
from reports.shadow import (
    compare_shadow,
    judge_shadow,
    shadow_html,
    shadow_markdown,
    shadow_metric_rows,
)
from tasks.ledger import ledger_stage
from tasks.monitoring import write_metrics
from tasks.promotion import promote, retire
from tasks.shadow import load_shadow_day, recorded_shadow_days, save_shadow_page


@flow(name="shadow", flow_run_name="shadow-{dataset}-{ds}", **RUN_END_HOOKS)
def shadow(dataset: str, ds: str, champion: str, challenger: str) -> dict:
    """Compare the challenger's scores of the day with the champion's (agreement, score
    shift, per-group bias deltas, realised quality where labels arrived), then judge the
    shadow window so far: promote the challenger to champion, retire it, or wait."""
    settings = current_settings()
    lake, registry, run_id = lake_of(settings), registry_of(settings), current_run_id()
    spec = get_dataset(dataset)
    policy = settings.shadow_policy_for(dataset)
    with ledger_stage(lake, dataset, ds, "shadow", run_id) as entry:
        frame = load_shadow_day(lake, spec, ds, champion, challenger)
        day = compare_shadow(
            ds, frame, spec.roles.protected, settings.fairness_policy_for(dataset), policy
        )
        write_metrics(
            lake, shadow_metric_rows(dataset, ds, challenger, day), dataset, ds, challenger, run_id
        )
        earlier = [d for d in recorded_shadow_days(lake, dataset, challenger) if d.ds != ds]
        verdict = judge_shadow([*earlier, day], policy)
        why = "; ".join(verdict.reasons)
        if verdict.decision == "promote":
            promote(registry, lake, dataset, challenger, reason=why, by="shadow", ds=ds)
        elif verdict.decision == "retire":
            retire(registry, lake, dataset, challenger, reason=why, by="shadow", ds=ds)
        page = save_shadow_page(
            settings.reports_uri,
            dataset,
            ds,
            shadow_html(dataset, ds, champion, challenger, day, verdict),
            store_of(settings),
        )
        publish_markdown(
            shadow_markdown(dataset, ds, champion, challenger, day, verdict),
            key=artifact_key(f"shadow-{dataset}-{ds}"),
            description=f"Challenger {challenger} beside champion {champion} on {dataset} ds={ds}",
        )
        entry.rows_in = day.rows
        entry.model_version = challenger
        entry.verdict = verdict.decision
        entry.report = page
        entry.details = {
            "champion": champion,
            "day": day.to_json(),
            "reasons": list(verdict.reasons),
        }
    get_run_logger().info(
        "%s ds=%s: challenger %s beside champion %s, %s (%s)",
        dataset,
        ds,
        challenger,
        champion,
        verdict.decision,
        why,
    )
    return {"decision": verdict.decision, "reasons": list(verdict.reasons), "report": page}
