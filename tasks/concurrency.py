"""One run at a time across every worker: a Prefect global concurrency limit of one slot."""

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
