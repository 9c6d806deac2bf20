"""Publishing rendered summaries as Prefect markdown artifacts (shown on the run's page)."""

from __future__ import annotations

import re
import warnings

from prefect.artifacts import create_markdown_artifact


def artifact_key(text: str) -> str:
    """`text` as a Prefect artifact key: lowercase letters, digits and single dashes."""
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not key:
        raise ValueError(f"no artifact key can be made from {text!r}")
    return key


def publish_markdown(markdown: str, key: str, description: str) -> None:
    """Create (or add a version of) the markdown artifact `key`, sanitized by `artifact_key`.
    Outside a flow or task run (a CLI command's summary) it is the API's artifact of no run:
    Prefect warns that it may stop taking those one day; the warning says nothing to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Artifact creation outside", FutureWarning)
        create_markdown_artifact(markdown=markdown, key=artifact_key(key), description=description)


BREACH_EVENT = "tidewater.threshold.breached"


def emit_breach_event(
    dataset: str, ds: str, model_version: str, verdict: str, reasons: list[str]
) -> None:
    """Tell Prefect a monitoring threshold was breached; alert automations match on it."""
    from prefect.events import emit_event

    emit_event(
        event=BREACH_EVENT,
        resource={"prefect.resource.id": f"tidewater.dataset.{dataset}", "dataset": dataset},
        payload={"ds": ds, "model_version": model_version, "verdict": verdict, "reasons": reasons},
    )


RETRAIN_EVENT = "tidewater.retrain.requested"


def emit_retrain_request(
    dataset: str,
    ds: str,
    days: list[str],
    reasons: list[str],
    champion: str | None,
    policy: dict,
) -> str | None:
    """Ask for a retraining of `dataset` on `days`: the retrain deployment's trigger (an
    automation) matches this event and renders the flow run's parameters from its payload.
    Returns the event's id (None when events are off)."""
    from prefect.events import emit_event

    event = emit_event(
        event=RETRAIN_EVENT,
        resource={"prefect.resource.id": f"tidewater.dataset.{dataset}", "dataset": dataset},
        payload={
            "ds": ds,
            "days": list(days),
            "reasons": list(reasons),
            "champion": champion,
            "policy": policy,
        },
    )
    return str(event.id) if event else None
