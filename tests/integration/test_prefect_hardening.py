"""Self-hosted hardening: the Prefect server tidewater starts, given the production settings
through the environment (PostgreSQL, basic auth, CSRF protection), refuses what it must and
runs a day of the pipeline driven from the CLI."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from deployments.server import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DS = "2024-03-02"
STAGES = ("pipeline", "ingest", "validate", "score", "monitor")
# Where a Prefect API and its server are configured: left out of the clients' environment.
API_SETTINGS = ("PREFECT_API_", "PREFECT_SERVER_API_", "PREFECT_SERVER_DATABASE_")


@dataclass(frozen=True)
class Server:
    home: Path
    api_url: str
    auth: str
    database_url: str | None  # None: the embedded SQLite

    def client(self, auth: str | None = None) -> httpx.Client:
        credential = tuple(auth.split(":", 1)) if auth else None
        return httpx.Client(base_url=self.api_url, auth=credential, timeout=30)

    def post(self, path: str, body: dict) -> httpx.Response:
        """An authenticated POST with a CSRF token, as Prefect's client sends it."""
        with self.client(self.auth) as client:
            response = client.post(path, json=body, headers=_csrf_headers(client, "tests"))
        assert response.status_code in (200, 201), response.text
        return response


@pytest.fixture(scope="module")
def server(request, tmp_path_factory) -> Iterator[Server]:
    """tidewater's own server, started with production settings from the environment:
    basic auth, CSRF protection and PostgreSQL, or SQLite where PostgreSQL is not installed
    (auth and CSRF are tested everywhere; the PostgreSQL test skips then)."""
    try:
        database_url = request.getfixturevalue("postgresql_url")
    except pytest.skip.Exception:
        database_url = None
    home = tmp_path_factory.mktemp("hardened")
    auth = f"operator:{secrets.token_urlsafe(12)}"
    production = {
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
    }
    if database_url:
        production["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    with pytest.MonkeyPatch.context() as patch:
        for name, value in production.items():
            patch.setenv(name, value)
        info = start_server(home)
    try:
        yield Server(home, info["api_url"], auth, database_url)
    finally:
        stop_server(home)
        _wait_until_down(info["api_url"])


def _wait_until_down(api_url: str, seconds: float = 30) -> None:
    """Let the server close its database connections before PostgreSQL stops."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{api_url}/health", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.2)


def _client_env(**extra: str) -> dict[str, str]:
    """The test process's environment without Prefect API or server settings, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(API_SETTINGS)}
    return env | {"TIDEWATER_DASK_WORKERS": "1", "COLUMNS": "200"} | extra


def tidewater(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=600)


def _csrf_headers(client: httpx.Client, name: str) -> dict[str, str]:
    response = client.get("/csrf-token", params={"client": name})
    assert response.status_code == 200, response.text
    return {"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": name}


def _flow_runs(server: Server) -> dict[str, dict]:
    """Flow runs by name, through the authenticated API."""
    return {run["name"]: run for run in server.post("/flow_runs/filter", {}).json()}


def _query(database_url: str, sql: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            return await connection.fetch(sql)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_api_refuses_requests_without_the_credential(server):
    with server.client() as anonymous:
        assert anonymous.get("/admin/version").status_code == 401
        assert anonymous.get("/csrf-token", params={"client": "x"}).status_code == 401
        # Liveness stays open (start_server's probe, Kubernetes): it reveals nothing.
        assert anonymous.get("/health").status_code == 200
    with server.client("operator:wrong") as wrong:
        assert wrong.get("/admin/version").status_code == 401
    with server.client(server.auth) as client:
        version = client.get("/admin/version")
    assert version.status_code == 200 and version.json().startswith("3.9")


def test_state_changing_requests_need_a_csrf_token(server):
    with server.client(server.auth) as client:
        missing = client.post("/flows/filter", json={})
        assert missing.status_code == 403 and "Missing CSRF token" in missing.text
        forged = {"Prefect-Csrf-Token": "forged", "Prefect-Csrf-Client": "tidewater-tests"}
        assert client.post("/flows/filter", json={}, headers=forged).status_code == 403
        headers = _csrf_headers(client, "tidewater-tests")
        assert client.post("/flows/filter", json={}, headers=headers).status_code == 200


def test_a_day_runs_from_the_cli_with_auth_and_csrf(server):
    env = _client_env(
        TIDEWATER_HOME=str(server.home),
        PREFECT_API_URL=server.api_url,
        PREFECT_API_AUTH_STRING=server.auth,
    )
    landed = tidewater("land", "adult", "--start", "2024-03-01", "--days", "8", env=env)
    assert landed.returncode == 0, landed.stderr
    ran = tidewater("run", "adult", "--ds", DS, env=env)
    assert ran.returncode == 0, ran.stderr
    assert DS in ran.stdout and "all ok" in ran.stdout

    runs = _flow_runs(server)
    states = {name: run["state_type"] for name, run in runs.items()}
    expected = [f"{stage}-adult-{DS}" for stage in STAGES]
    assert {name: states.get(name) for name in expected} == dict.fromkeys(expected, "COMPLETED")
    # Shard tasks run in the Dask worker process: it had the credential too.
    score_run = {"id": {"any_": [runs[f"score-adult-{DS}"]["id"]]}}
    task_runs = server.post("/task_runs/filter", {"flow_runs": score_run}).json()
    shards = [run["state_type"] for run in task_runs if run["name"].startswith("score-shard")]
    assert shards and set(shards) == {"COMPLETED"}


def test_the_server_keeps_its_runs_in_postgresql(server, postgresql_url):
    assert server.database_url == postgresql_url
    flow = server.post("/flows/", {"name": "postgresql-probe"}).json()
    server.post("/flow_runs/", {"flow_id": flow["id"], "name": "postgresql-probe-run"})

    in_postgres = _query(postgresql_url, "SELECT name, state_type FROM flow_run")
    api = {name: run["state_type"] for name, run in _flow_runs(server).items()}
    assert {row["name"]: row["state_type"] for row in in_postgres} == api
    assert "postgresql-probe-run" in api

    # No credential reaches what the server stores (flow parameters, logs).
    stored = _query(
        postgresql_url,
        "SELECT parameters::text AS text FROM flow_run UNION ALL SELECT message FROM log",
    )
    hidden = (server.auth.split(":", 1)[1], urlsplit(postgresql_url).password)
    assert not [row["text"] for row in stored if any(secret in row["text"] for secret in hidden)]


def test_the_cli_without_the_credential_fails_clearly(server, tmp_path):
    env = _client_env(
        TIDEWATER_HOME=str(tmp_path / "home"),
        PREFECT_API_URL=server.api_url,
    )
    landed = tidewater("land", "adult", "--start", DS, "--days", "1", env=env)
    assert landed.returncode == 0, landed.stderr
    ran = tidewater("run", "adult", "--ds", DS, env=env)
    assert ran.returncode == 1
    assert "wants basic auth (HTTP 401)" in ran.stderr
    assert "set PREFECT_API_AUTH_STRING" in ran.stderr


EMBEDDED_CLIENT = """
import sys
from pathlib import Path
from deployments.server import ensure_prefect_api

print(ensure_prefect_api(Path(sys.argv[1])))
from prefect import flow  # after ensure_prefect_api, as the CLI does: settings read at import


@flow(name="probe", flow_run_name="embedded-client-probe")
def probe() -> None:
    pass


probe()
"""


def test_the_embedded_server_hands_its_credential_to_clients(server):
    """With only the server's settings in the environment (no PREFECT_API_*), a process of
    the same TIDEWATER_HOME finds the running server and authenticates to it."""
    env = _client_env(
        PREFECT_SERVER_API_AUTH_STRING=server.auth,
        PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED="true",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    probe = subprocess.run(
        [sys.executable, "-c", EMBEDDED_CLIENT, str(server.home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines()[0] == server.api_url
    assert _flow_runs(server)["embedded-client-probe"]["state_type"] == "COMPLETED"
