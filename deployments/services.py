"""The background processes of `tidewater serve` besides the Prefect server: the long-lived
Dask cluster, a Prefect worker on the work pool, and an HTTP server of the reports folder.

Each runs in its own session (so it outlives the command and stops as a group), logs to
`$TIDEWATER_HOME/serve/{name}.log` and is recorded in `$TIDEWATER_HOME/serve/{name}.json`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from deployments.server import answers

STARTUP_SECONDS = 120
STOP_SECONDS = 15
SERVICES = ("worker", "reports", "dask")  # stop order: nothing submits work to a dead cluster


def _state(home: Path, name: str) -> Path:
    return Path(home) / "serve" / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is dead too
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def running_service(home: Path, name: str) -> dict | None:
    """The recorded state of service `name` of `home` if its process is alive."""
    try:
        info = json.loads(_state(home, name).read_text())
    except (OSError, ValueError):
        return None
    return info if _alive(info["pid"]) else None


def start_service(
    home: Path,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    ready: Callable[[], bool],
    **info: str,
) -> dict:
    """Start `argv` as service `name` unless it runs; wait until `ready()`; record it."""
    running = running_service(home, name)
    if running:
        return running
    folder = Path(home) / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_group(process.pid)
            raise RuntimeError(f"{name} did not start; see {folder / f'{name}.log'}")
        time.sleep(0.5)
    state = {"pid": process.pid, **info}
    _state(home, name).write_text(json.dumps(state))
    return state


def _stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def stop_service(home: Path, name: str) -> bool:
    """Stop service `name` of `home` (its whole process group); False when none ran."""
    info = running_service(home, name)
    _state(home, name).unlink(missing_ok=True)
    if not info:
        return False
    _stop_group(info["pid"])
    return True


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def prefect_cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("prefect")), *args]


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: answers(url)


def online_workers(pool: str, api_url: str) -> Callable[[], bool]:
    """Whether a worker of `pool` has sent its heartbeat to the Prefect API at `api_url`."""

    def check() -> bool:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus
        from prefect.settings import PREFECT_API_URL, temporary_settings

        try:
            with (
                temporary_settings({PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
            ):
                workers = client.read_workers_for_work_pool(
                    pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
                )
        except Exception:  # noqa: BLE001 - not ready yet (pool not created, API busy)
            return False
        return bool(workers)

    return check
