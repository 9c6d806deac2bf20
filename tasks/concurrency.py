"""Prefect global concurrency limits: one run at a time across every worker, and the scoring
slots that keep a backfill from starving the scheduled runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_at_a_time(name: str, timeout_seconds: float = 3600) -> Iterator[None]:
    """Hold the only slot of the global concurrency limit `name` (created if missing) while
    the body runs; a second holder, in any process, waits until the first is done."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield


# Every pipeline run holds a slot of SCORING_LIMIT while it scores; a backfill's runs also
# hold one of BACKFILL_SCORING_LIMIT, which has one slot fewer, so however many days a
# backfill runs at once, a scheduled run always finds a scoring slot within one day's
# scoring.
SCORING_LIMIT = "tidewater-scoring"
BACKFILL_SCORING_LIMIT = "tidewater-backfill-scoring"


def ensure_scoring_limits(slots: int) -> None:
    """Create (or resize) the scoring limits: `slots` in all, `slots - 1` (at least one)
    for backfills."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(SCORING_LIMIT, limit=slots)
        client.upsert_global_concurrency_limit_by_name(
            BACKFILL_SCORING_LIMIT, limit=max(1, slots - 1)
        )


@contextmanager
def scoring_slot(backfill: bool) -> Iterator[None]:
    """Hold a scoring slot (and a backfill's, for a backfill's run) while the body runs;
    waits while the slots are taken. Without the limits (never created) it does not wait.
    The slots are leased: a run killed while holding one frees it when the lease ends."""
    from prefect.concurrency.sync import concurrency

    names = [SCORING_LIMIT, BACKFILL_SCORING_LIMIT] if backfill else [SCORING_LIMIT]
    with concurrency(names, occupy=1, strict=False):
        yield
