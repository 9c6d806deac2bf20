"""The Dask cluster shard tasks run on: an existing scheduler by address, else
`LocalCUDACluster` (one worker per visible GPU) when GPUs are visible, else a
`LocalCluster` of worker processes sized to the machine."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from tasks import step


@dataclass(frozen=True)
class ClusterSpec:
    """How to start a local cluster when no scheduler address is given."""

    workers: int | None = None
    threads_per_worker: int = 1
    device: str = "auto"
    rmm_pool_size: str | None = None
    device_memory_limit: str | None = None
    local_directory: str | None = None

    def wants_gpu(self) -> bool:
        return self.device != "cpu" and visible_gpus() > 0 and _dask_cuda_installed()


@dataclass(frozen=True)
class ClusterInfo:
    """What a flow run used: where, how many workers and threads, which devices."""

    address: str
    workers: int
    threads: int
    devices: tuple[str, ...]
    dashboard: str | None

    def describe(self) -> str:
        kinds = sorted(set(self.devices))
        return (
            f"Dask scheduler {self.address}: {self.workers} workers, {self.threads} threads, "
            f"devices {', '.join(kinds) or 'none'}"
            + (f"; dashboard {self.dashboard}" if self.dashboard else "")
        )


def visible_gpus() -> int:
    """CUDA devices this process can see (0 without CuPy or a driver): counted, not imported."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def _dask_cuda_installed() -> bool:
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        return False
    return True


def cluster_class_and_kwargs(spec: ClusterSpec) -> tuple[str, dict]:
    """The cluster class path and its arguments. Every local cluster binds to loopback only:
    the scheduler unpickles what it is sent."""
    common = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    if spec.local_directory:
        common["local_directory"] = spec.local_directory
    if spec.wants_gpu():
        kwargs = common | {"threads_per_worker": spec.threads_per_worker}
        if spec.rmm_pool_size:
            kwargs["rmm_pool_size"] = spec.rmm_pool_size
        if spec.device_memory_limit:
            kwargs["device_memory_limit"] = spec.device_memory_limit
        return "dask_cuda.LocalCUDACluster", kwargs
    workers = spec.workers or max(1, (os.cpu_count() or 1) // spec.threads_per_worker)
    return "distributed.LocalCluster", common | {
        "n_workers": workers,
        "threads_per_worker": spec.threads_per_worker,
        "processes": True,
    }


def scheduler_file(home: Path) -> Path:
    """Where the long-lived cluster of `tidewater serve` writes its scheduler's address."""
    return Path(home) / "dask" / "scheduler.json"


def served_scheduler_address(home: Path) -> str | None:
    """The address of the scheduler `tidewater serve` runs for `home`, if it answers."""
    path = scheduler_file(home)
    try:
        address = json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return None
    return address


def dask_task_runner(address: str | None, spec: ClusterSpec) -> DaskTaskRunner:
    """Runs tasks on the scheduler at `address`, or on a local cluster for one flow run."""
    if address:
        return DaskTaskRunner(address=address)
    cluster_class, kwargs = cluster_class_and_kwargs(spec)
    return DaskTaskRunner(cluster_class=cluster_class, cluster_kwargs=kwargs)


def report_task_runner(address: str | None) -> TaskRunner:
    """Runs a monitor's report tasks on the cluster at `address`, whose workers keep
    Evidently imported from one run to the next; without one, on this process's threads
    (a cluster started for one report would cost more than the report)."""
    return DaskTaskRunner(address=address) if address else ThreadPoolTaskRunner()


class ImportReportLibrariesOnStart(WorkerPlugin):
    """Each worker imports Evidently and fairlearn on a thread as it starts (about 11 s of
    Python), so that the monitor's tasks, run on workers, do not wait for them."""

    name = "tidewater-import-report-libraries"

    def setup(self, worker) -> None:
        from reports.drift import import_report_libraries_in_background

        import_report_libraries_in_background()


@contextmanager
def local_cluster(spec: ClusterSpec) -> Iterator[str]:
    """A local cluster that outlives many flow runs, its workers importing the report
    libraries as they start; yields its scheduler address."""
    import importlib

    from distributed import Client

    cluster_class, kwargs = cluster_class_and_kwargs(spec)
    module, name = cluster_class.rsplit(".", 1)
    cluster = getattr(importlib.import_module(module), name)(**kwargs)
    with Client(cluster) as client:
        client.register_plugin(ImportReportLibrariesOnStart())
    try:
        yield cluster.scheduler_address
    finally:
        try:
            cluster.close()
        except Exception as error:  # noqa: BLE001 - the work is done; a slow shutdown is not
            # a failed run (seen: shutdown timeouts under load)
            logging.getLogger(__name__).warning("the local Dask cluster did not close: %s", error)


@contextmanager
def scheduler_at(address: str | None, spec: ClusterSpec) -> Iterator[str]:
    """`address` when given, else that of a local cluster that lives as long as the block."""
    if address:
        yield address
        return
    with local_cluster(spec) as started:
        yield started


def _worker_device() -> str:
    from kernels import gpu_available

    if not gpu_available():
        return "cpu"
    import cupy

    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return f"gpu:{properties['name'].decode()}"


@step
def inspect_cluster() -> ClusterInfo:
    """Runs on a worker: the cluster it belongs to, as the scheduler sees it."""
    from distributed import get_client

    try:
        client = get_client()
    except ValueError:
        device = _worker_device()
        return ClusterInfo("in-process (no Dask cluster)", 1, 1, (device,), None)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    devices = client.run(_worker_device)
    return ClusterInfo(
        address=client.scheduler.address,
        workers=len(workers),
        threads=sum(worker["nthreads"] for worker in workers.values()),
        devices=tuple(devices[address] for address in sorted(devices)),
        dashboard=client.dashboard_link,
    )


@step
def publish_dashboard_link(cluster: ClusterInfo, key: str) -> None:
    """Link the Dask dashboard from the flow run (a Prefect link artifact)."""
    if not cluster.dashboard:
        return
    from prefect.artifacts import create_link_artifact

    create_link_artifact(
        cluster.dashboard, link_text="Dask dashboard", key=key, description=cluster.describe()
    )
