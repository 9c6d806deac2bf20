"""Units of work: plain functions, each wrapped by a thin Prefect task for the flows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE


def step(fn: Callable | None = None, *, retries: int = 0, name: str | None = None) -> Any:
    """`@task` without result caching (inputs are large tables; every run recomputes),
    retried only where storage or network is touched."""

    def wrap(function: Callable) -> Any:
        return task(
            function,
            name=name or function.__name__.replace("_", "-"),
            cache_policy=NO_CACHE,
            retries=retries,
            retry_delay_seconds=[1, 4, 10][:retries] if retries else 0,
        )

    return wrap(fn) if fn is not None else wrap
