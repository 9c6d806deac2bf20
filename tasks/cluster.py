"""The Dask cluster shard tasks run on: an existing scheduler, or one started here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect_dask import DaskTaskRunner


def local_cluster_kwargs(workers: int, threads_per_worker: int) -> dict:
    """Worker processes on loopback only (the scheduler unpickles what it is sent)."""
    return {
        "n_workers": workers,
        "threads_per_worker": threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }


def dask_task_runner(address: str | None, workers: int, threads_per_worker: int) -> DaskTaskRunner:
    """Runs tasks on the scheduler at `address`, or on a LocalCluster for one flow run."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs=local_cluster_kwargs(workers, threads_per_worker),
    )


@contextmanager
def local_cluster(workers: int, threads_per_worker: int) -> Iterator[str]:
    """A LocalCluster that outlives many flow runs; yields its scheduler address."""
    from distributed import LocalCluster

    with LocalCluster(**local_cluster_kwargs(workers, threads_per_worker)) as cluster:
        yield cluster.scheduler_address
