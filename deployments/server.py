"""The embedded Prefect API: one `prefect server` on loopback per TIDEWATER_HOME, shared by
every process (CLI, flows, Dask workers), started on first use when PREFECT_API_URL is unset."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTUP_SECONDS = 90


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 200 within two seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _healthy(api_url: str) -> bool:
    return answers(f"{api_url}/health")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(prefect_home: Path, port: int) -> dict[str, str]:
    """What the embedded server process runs with: the caller's environment, so that
    production settings reach it (database URL, else SQLite under TIDEWATER_HOME; basic
    auth; CSRF protection), and a UI that calls this server's API (the UI's API address is
    built from the API port setting, not from `prefect server start --port`)."""
    return {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def running_server(home: Path) -> dict | None:
    """The embedded server of `home` if it answers, else None."""
    state = home / "prefect" / "server.json"
    if not state.exists():
        return None
    info = json.loads(state.read_text())
    return info if _healthy(info["api_url"]) else None


def start_server(home: Path) -> dict:
    """Start (or find) the embedded server of `home`; returns its api_url, ui_url and pid."""
    prefect_home = home / "prefect"
    with _locked(prefect_home / "server.lock"):
        info = running_server(home)
        if info:
            return info
        port = _free_port()
        prefect = Path(sys.executable).with_name("prefect")
        log = open(prefect_home / "server.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_environment(prefect_home, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        info = {
            "api_url": f"http://127.0.0.1:{port}/api",
            "ui_url": f"http://127.0.0.1:{port}",
            "pid": process.pid,
        }
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(info["api_url"]):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"the embedded Prefect server did not start; see {prefect_home / 'server.log'}"
                )
            time.sleep(0.5)
        (prefect_home / "server.json").write_text(json.dumps(info))
        return info


def stop_server(home: Path) -> bool:
    """Stop the embedded server of `home`; False when none was running."""
    info = running_server(home)
    if not info:
        return False
    os.killpg(os.getpgid(info["pid"]), signal.SIGTERM)
    (home / "prefect" / "server.json").unlink(missing_ok=True)
    return True


def ensure_prefect_api(home: Path) -> str:
    """The Prefect API every process of this run uses: PREFECT_API_URL when set, else the
    embedded server of `home`, exported so that child processes (Dask workers) share it,
    with the server's basic-auth credential when it has one."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured
    info = start_server(home)
    os.environ["PREFECT_API_URL"] = info["api_url"]
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if auth := os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        os.environ.setdefault("PREFECT_API_AUTH_STRING", auth)
    return info["api_url"]
