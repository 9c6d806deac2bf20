"""Backfill and repair planning: which days of a range `tidewater backfill` reruns, which
stages of each, and why. Pure: it reads what landed and what the ledger says
(`day_status`'s rows), and touches nothing, so the plan can be printed before anything runs."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# `missing`: landed days the daily pipeline never completed; `failed`: landed days whose
# latest attempt of a pipeline stage did not succeed; `all`: every landed day.
BACKFILL_POLICIES = ("missing", "failed", "all")

# What `flows.pipeline` runs for every day, in order (names of `tasks.ledger.STAGES`); each
# reads what the one before it wrote, so rerunning one reruns every later one. Labels,
# training and shadow run only on some days, so a day is complete without them.
PIPELINE_STAGES = ("ingest", "validate", "score", "monitor")

# The pipeline flow's own ledger row: it fails when something after the stages fails
# (labels, shadow, the row accounting) or the run crashes or is cancelled.
PIPELINE_RUN = "pipeline"

# The reasons a day is given when it is not a failure.
NOTHING_LANDED = "nothing landed"
NEVER_SUCCEEDED = "landed, never succeeded"
RELANDED = "re-landed since its last ingest"
ALREADY_SUCCEEDED = "already succeeded"

_REASON_WIDTH = 80


@dataclass(frozen=True)
class PlannedDay:
    """One day of a backfill plan: whether it runs, why, and which stages run (in order;
    empty when it does not run)."""

    ds: str
    run: bool
    why: str
    stages: tuple[str, ...]


def with_dependents(stages: Iterable[str]) -> tuple[str, ...]:
    """The pipeline stages from the earliest of `stages` on, in order: a stage's output is
    the next one's input, so what depends on a rerun stage reruns too. Raises ValueError
    for a name that is not a pipeline stage, or no stage at all."""
    named = list(stages)
    unknown = [name for name in named if name not in PIPELINE_STAGES]
    if unknown or not named:
        raise ValueError(
            f"unknown pipeline stage {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"expected some of {', '.join(PIPELINE_STAGES)}"
        )
    return PIPELINE_STAGES[min(PIPELINE_STAGES.index(name) for name in named) :]


def repair_stages(row: Mapping[str, Any] | None) -> tuple[str, ...]:
    """What repairing a day reruns, from its `day_status` row: the first pipeline stage
    whose latest run did not succeed or that never ran, and every stage after it; all of
    them when only the pipeline run itself failed (accounting, shadow, a crash after the
    stages); none when the day is complete."""
    statuses = dict(row.get("stages") or {}) if row else {}
    for stage in PIPELINE_STAGES:
        if statuses.get(stage) != "succeeded":
            return with_dependents([stage])
    if statuses.get(PIPELINE_RUN, "succeeded") != "succeeded":
        return PIPELINE_STAGES
    return ()


def plan_backfill(
    landed: Sequence[str],
    day_rows: Sequence[Mapping[str, Any]],
    start: str,
    end: str,
    policy: str,
    newest_first: bool = False,
    stages: Iterable[str] | None = None,
    relanded: Collection[str] = (),
) -> list[PlannedDay]:
    """Every day from `start` to `end` (inclusive, YYYY-MM-DD) once, oldest first (newest
    first with `newest_first`), saying whether the backfill reruns it under `policy`.

    `landed` are the days with a landing partition; `day_rows` are `day_status`'s rows (only
    their "ds", "stages" and "errors" are read). A day with nothing landed never runs. Of
    the landed days, `missing` runs those not complete (the latest run of every pipeline
    stage succeeded), `failed` those whose latest attempt of a pipeline stage (or of the
    pipeline run itself) did not succeed, and `all` every one. The ledger keeps only the
    latest status of each stage, so a complete day whose rerun then failed counts as not
    complete.

    `relanded` days (whose landed files changed since their latest ingest: see
    `landing_changed`) are not complete: they rerun from ingest.

    A day that runs reruns, under `missing` and `failed`, what `repair_stages` says (what
    succeeded is reused), and under `all` every stage; `stages` (with their dependents)
    replaces that for every day that runs. Raises ValueError for an unknown policy or
    stage, a malformed day or `start > end`.
    """
    if policy not in BACKFILL_POLICIES:
        raise ValueError(
            f"unknown backfill policy {policy!r}; expected one of {', '.join(BACKFILL_POLICIES)}"
        )
    first, last = _day(start, "start"), _day(end, "end")
    if first > last:
        raise ValueError(f"backfill range is reversed: start {start} is after end {end}")
    chosen = with_dependents(stages) if stages is not None else None
    landed_days = set(landed)
    rows = {row["ds"]: row for row in day_rows}
    plan = [
        _plan_day(ds, ds in landed_days, rows.get(ds), policy, chosen, ds in relanded)
        for ds in _days(first, last)
    ]
    return plan[::-1] if newest_first else plan


def plan_table_rows(plan: Iterable[PlannedDay]) -> list[tuple[str, str, str, str]]:
    """(ds, "run" or "skip", why, stages joined by " → ") per planned day, for printing."""
    return [(day.ds, "run" if day.run else "skip", day.why, " → ".join(day.stages)) for day in plan]


def _plan_day(
    ds: str,
    landed: bool,
    row: Mapping[str, Any] | None,
    policy: str,
    chosen: tuple[str, ...] | None,
    relanded: bool = False,
) -> PlannedDay:
    if not landed:
        return PlannedDay(ds, False, NOTHING_LANDED, ())
    statuses = dict(row.get("stages") or {}) if row else {}
    if relanded:  # what was ingested is not what landed: nothing after landing is current
        statuses.pop("ingest", None)
    errors = dict(row.get("errors") or {}) if row else {}
    failure = _latest_failure(statuses, errors)
    complete = all(statuses.get(stage) == "succeeded" for stage in PIPELINE_STAGES)
    if failure is not None:
        why = f"{failure}; {RELANDED}" if relanded else failure
    elif relanded:
        why = RELANDED
    elif not complete:
        why = _not_yet_run(statuses)
    else:
        why = ALREADY_SUCCEEDED
    run = {
        "missing": not complete,
        "failed": failure is not None,
        "all": True,
    }[policy]
    if run and policy == "all" and why == ALREADY_SUCCEEDED:
        why = f"{ALREADY_SUCCEEDED}, rerun (all)"
    if not run:
        return PlannedDay(ds, False, why, ())
    rerun = PIPELINE_STAGES if policy == "all" else repair_stages({"stages": statuses})
    rerun = rerun or PIPELINE_STAGES  # only the pipeline run failed
    return PlannedDay(ds, True, why, chosen or rerun)


def landing_changed(landed: Iterable[tuple[str, int]], ingested: Iterable[Mapping]) -> bool:
    """Whether the files landed now, as (path, size), differ from the files an ingest
    recorded (its ledger row's `files`: path, size, ...): one added, removed or resized.
    Sizes, not checksums: planning lists the landing zone, it does not read it."""
    return set(landed) != {(entry["path"], int(entry["size"])) for entry in ingested}


def _latest_failure(statuses: Mapping[str, str], errors: Mapping[str, Any]) -> str | None:
    """The first pipeline stage (then the pipeline run) whose latest status is not
    `succeeded`, as "last <stage> <status>: <error's first line>", or None."""
    for stage in (*PIPELINE_STAGES, PIPELINE_RUN):
        status = statuses.get(stage)
        if status not in (None, "succeeded", "running"):  # running: not complete, not failed
            error = _first_line(errors.get(stage))
            return f"last {stage} {status}" + (f": {error}" if error else "")
    return None


def _not_yet_run(statuses: Mapping[str, str]) -> str:
    """Why a landed day with no failure is not complete: a stage is running now (a backfill
    adopts its flow run), it never ran, or a stage is absent."""
    running = [stage for stage in PIPELINE_STAGES if statuses.get(stage) == "running"]
    if running:
        return f"landed, {running[0]} running now"
    absent = [stage for stage in PIPELINE_STAGES if stage not in statuses]
    if len(absent) == len(PIPELINE_STAGES):
        return NEVER_SUCCEEDED
    return f"landed, {absent[0]} never ran"


def _first_line(error: Any) -> str:
    if not isinstance(error, str):  # None, or NaN from a pandas row
        return ""
    line = error.strip().split("\n", 1)[0].strip()
    return line if len(line) <= _REASON_WIDTH else line[: _REASON_WIDTH - 1] + "…"


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"backfill {name} {text!r} is not a day (YYYY-MM-DD)") from None


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
