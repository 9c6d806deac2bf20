"""`tidewater doctor` against real components: the session's Prefect server and Dask
cluster, local folders, the installed packages. Misconfigured servers are small fakes."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from deployments.doctor import (
    Check,
    check_dask,
    check_gpu,
    check_model_registry,
    check_prefect_api,
    check_prefect_ui,
    check_storage,
    check_versions,
    check_work_pool,
    exit_code,
    render_checks,
    run_checks,
)
from flows.settings import Settings
from tasks.registry import ModelRegistry


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def closed_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_pool(api_url: str, make) -> None:
    """Run `make(client)` with a Prefect client of `api_url`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def go():
        with temporary_settings({PREFECT_API_URL: api_url}):
            async with get_client() as client:
                await make(client)

    run_coro_as_sync(go())


def create_pool(api_url: str, name: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate

    on_pool(
        api_url, lambda client: client.create_work_pool(WorkPoolCreate(name=name, type="process"))
    )


def worker_heartbeat(api_url: str, pool: str) -> None:
    """What a worker of `pool` sends every 30 s."""
    on_pool(
        api_url,
        lambda client: client.send_worker_heartbeat(pool, "doctor-test-worker", 30),
    )


@pytest.fixture
def fake_server() -> Iterator:
    """Start a loopback HTTP server answering `routes` {path: (status, json body)}; with
    `auth`, every route but /api/health wants that basic-auth string. Returns its base URL."""
    servers = []

    def start(routes: dict[str, tuple[int, object]], auth: str | None = None) -> str:
        expected = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                authorized = expected is None or self.headers.get("Authorization") == expected
                if self.path not in routes:
                    status, body = 404, {"detail": "Not Found"}
                elif not authorized and self.path != "/api/health":
                    status, body = 401, {"exception_message": "Unauthorized"}
                else:
                    status, body = routes[self.path]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- a healthy setup --------------------------------------------------------------------


def test_a_healthy_setup_is_all_ok_but_a_missing_work_pool(settings, prefect_api, dask_address):
    pool = f"doctor-{uuid.uuid4().hex[:8]}"
    checks = by_name(
        run_checks(settings, api_url=prefect_api, dask_address=dask_address, work_pool=pool)
    )
    assert list(checks) == [
        "Prefect API",
        "Prefect UI",
        f"work pool {pool}",
        "Dask",
        "storage landing",
        "storage lake",
        "storage reports",
        "storage models",
        "model registry",
        "GPU",
        "versions",
    ]
    missing = checks.pop(f"work pool {pool}")
    assert missing.status == "fail" and "tidewater deploy" in missing.fix
    gpu = checks.pop("GPU")
    assert gpu.status != "fail", gpu
    assert all(check.status == "ok" for check in checks.values()), checks
    assert "2 workers" in checks["Dask"].detail
    assert "calls" in checks["Prefect UI"].detail and "CSRF off" in checks["Prefect UI"].detail
    assert exit_code(list(checks.values())) == 0
    assert exit_code([*checks.values(), missing]) == 1
    # The probe files are gone.
    for uri in (settings.landing_uri, settings.lake_uri, settings.reports_uri):
        assert not [p for p in os.listdir(uri) if p.startswith("_doctor-probe")]


def test_the_work_pool_passes_once_it_exists_and_a_worker_beats(settings, prefect_api):
    pool = f"doctor-{uuid.uuid4().hex[:8]}"
    create_pool(prefect_api, pool)
    idle = check_work_pool(prefect_api, pool)
    assert idle.status == "warn" and "no worker" in idle.detail
    assert f"prefect worker start --pool {pool}" in idle.fix

    worker_heartbeat(prefect_api, pool)
    checks = run_checks(settings, api_url=prefect_api, dask_address=None, work_pool=pool)
    pool_check = by_name(checks)[f"work pool {pool}"]
    assert pool_check.status == "ok" and "doctor-test-worker" in pool_check.detail
    assert exit_code(checks) == 0

    later = datetime.now(UTC) + timedelta(minutes=5)  # three heartbeats missed
    assert check_work_pool(prefect_api, pool, now=later).status == "warn"


# --- what is wrong, and how to fix it -----------------------------------------------------


def test_an_api_where_nothing_listens_fails_and_says_how_to_start_one(settings):
    api_url = f"http://127.0.0.1:{closed_port()}/api"
    checks = by_name(run_checks(settings, api_url=api_url, dask_address=None))
    api = checks["Prefect API"]
    assert api.status == "fail" and api_url in api.detail
    assert "tidewater serve" in api.fix and "PREFECT_API_URL" in api.fix
    assert checks["Prefect UI"].status == "warn" and "not checked" in checks["Prefect UI"].detail
    assert exit_code(list(checks.values())) == 1


def test_no_api_url_is_a_warning_about_the_embedded_server():
    check = check_prefect_api(None)
    assert check.status == "warn" and "embedded server" in check.detail


def test_an_api_url_without_its_api_path_or_scheme_says_what_is_wrong(prefect_api):
    ui_root = prefect_api.removesuffix("/api")
    check = check_prefect_api(ui_root)
    assert check.status == "fail" and f"{ui_root}/api" in check.fix
    no_scheme = check_prefect_api(prefect_api.removeprefix("http://"))
    assert no_scheme.status == "fail" and "tidewater serve" in no_scheme.fix


def test_a_ui_calling_another_api_fails_and_names_the_server_setting(fake_server):
    base = fake_server(
        {
            "/api/health": (200, True),
            "/api/admin/version": (200, "3.9.1"),
            "/ui-settings": (
                200,
                {"api_url": "http://127.0.0.1:4200/api", "csrf_enabled": True, "auth": "BASIC"},
            ),
        }
    )
    api_url = f"{base}/api"
    assert check_prefect_api(api_url).status == "ok"
    check = check_prefect_ui(api_url)
    assert check.status == "fail"
    assert "127.0.0.1:4200/api" in check.detail and api_url in check.detail
    assert "CSRF on" in check.detail and "auth BASIC" in check.detail
    assert f"PREFECT_UI_API_URL={api_url}" in check.fix and "PREFECT_SERVER_API_PORT" in check.fix


def test_a_ui_calling_the_same_server_by_another_loopback_name_is_ok(fake_server):
    routes: dict = {}
    base = fake_server(routes)
    port = base.rsplit(":", 1)[1]
    for ui_api in (f"http://localhost:{port}/api", "/api"):  # "/api": relative to the UI
        routes["/ui-settings"] = (200, {"api_url": ui_api, "csrf_enabled": False, "auth": None})
        check = check_prefect_ui(f"{base}/api")
        assert check.status == "ok", check
        assert "CSRF off, auth none" in check.detail


def test_basic_auth_is_sent_and_a_refusal_names_the_auth_setting(fake_server):
    routes = {"/api/health": (200, True), "/api/admin/version": (200, "3.9.1")}
    api_url = fake_server(routes, auth="admin:pass") + "/api"
    assert check_prefect_api(api_url, auth_string="admin:pass").status == "ok"
    for auth in (None, "admin:wrong"):
        check = check_prefect_api(api_url, auth_string=auth)
        assert check.status == "fail" and "401" in check.detail
        assert "PREFECT_API_AUTH_STRING" in check.fix


def test_a_landing_folder_that_cannot_be_created_fails_with_the_setting_to_change(tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    check = check_storage("landing", str(in_the_way / "landing"))
    assert check.status == "fail" and str(in_the_way / "landing") in check.detail
    assert "TIDEWATER_LANDING_URI" in check.fix and "written by this user" in check.fix


def test_storage_secrets_never_appear_in_what_the_doctor_says(tmp_path, home):
    secret = "wJalrXUtnFEMI-K7MDENG-doctor-secret"
    in_the_way = tmp_path / secret
    in_the_way.write_text("not a folder")
    settings = Settings(
        home=home,
        landing_uri=str(in_the_way / "landing"),
        storage_options={"secret": secret},
    )
    checks = run_checks(settings, api_url=None, dask_address=None)
    assert by_name(checks)["storage landing"].status == "fail"
    console = Console(record=True, width=400)
    console.print(render_checks(checks))
    text = console.export_text()
    assert secret not in text and "***" in text


def test_a_dead_dask_address_fails_and_names_the_setting():
    address = f"tcp://127.0.0.1:{closed_port()}"
    check = check_dask(address, timeout=1)
    assert check.status == "fail" and address in check.detail
    assert "TIDEWATER_DASK_ADDRESS" in check.fix and "tidewater serve" in check.fix


def test_a_check_that_crashes_becomes_a_fail(home):
    settings = Settings(home=home, models_uri="nosuchprotocol://bucket/models")
    checks = by_name(run_checks(settings, api_url=None, dask_address=None))
    assert checks["storage models"].status == "fail"
    registry = checks["model registry"]
    assert registry.status == "fail" and "nosuchprotocol" in registry.detail


# --- model registry, GPU, versions ----------------------------------------------------


def save_model(registry: ModelRegistry, dataset: str) -> str:
    import numpy as np
    import xgboost as xgb

    X = np.random.default_rng(0).random((50, 2))
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, label=X[:, 0] > 0.5), 2)
    card = registry.register_model(
        {
            "dataset": dataset,
            "created_at": "2024-01-01T00:00:00Z",
            "objective": "binary:logistic",
            "features": {},
            "target": "label",
            "positive_label": "1",
        },
        bytes(booster.save_raw(raw_format="json")),
        pd.DataFrame({"x": [1.0]}),
    )
    return card.version


def test_the_model_registry_reports_champions_and_catches_a_tampered_model(tmp_path):
    uri, models = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "models")
    assert "no registry yet" in check_model_registry(uri, models).detail
    registry = ModelRegistry(uri, models)
    assert registry.versions("adult") == []  # creates the database
    assert "no models yet" in check_model_registry(uri, models).detail
    registry.set_alias("adult", "champion", save_model(registry, "adult"))
    check = check_model_registry(uri, models)
    assert check.status == "ok" and "adult champion v1 of 1" in check.detail

    save_model(registry, "bank")
    check = check_model_registry(uri, models)
    assert check.status == "warn" and "no champion for bank" in check.detail
    assert "tidewater train" in check.fix

    model_json = registry.locations("adult", "v1")["model_json"]
    Path(model_json).write_bytes(b'{"learner": 1}')
    check = check_model_registry(uri, models)
    assert check.status == "fail" and "ModelIntegrityError" in check.detail


def test_the_gpu_check_reports_the_kernels_that_run():
    from kernels import gpu_available

    check = check_gpu("auto")
    if gpu_available():
        assert check.status in {"ok", "warn"} and "GPU(s):" in check.detail
    else:
        assert check.status in {"ok", "warn"} and "CPU kernels (Numba)" in check.detail
        forced = check_gpu("gpu")
        assert forced.status == "fail" and "TIDEWATER_DEVICE" in forced.fix


@pytest.mark.gpu
def test_the_gpu_check_names_the_device():
    import cupy

    check = check_gpu("auto")
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    assert (name.decode() if isinstance(name, bytes) else name) in check.detail


def test_a_version_outside_the_pins_fails_and_says_make_env():
    check = check_versions(requirements=["pandas<1"])
    assert check.status == "fail" and "pandas" in check.detail and "<1" in check.detail
    assert "make env" in check.fix


def test_versions_skip_extras_not_installed_and_report_missing_packages():
    extra_only = "no-such-package-for-doctor>=1; extra == 'gpu'"
    assert check_versions(requirements=[extra_only, "pandas>=1"]).status == "ok"
    installed_extra = "pandas<1; extra == 'gpu'"  # the extra's package is there: checked
    assert check_versions(requirements=[installed_extra]).status == "fail"
    missing = check_versions(requirements=["no-such-package-for-doctor>=1"])
    assert missing.status == "fail" and "missing" in missing.detail


def test_the_installed_project_satisfies_its_own_pins():
    check = check_versions()
    assert check.status == "ok", check.detail


def test_the_table_shows_every_check_and_keeps_brackets_literal():
    checks = [
        Check("a", "ok", "fine"),
        Check("b", "fail", "got [red]x[/red]", "do [bold]y[/bold]"),
    ]
    console = Console(record=True, width=200)
    console.print(render_checks(checks))
    text = console.export_text()
    for word in ("check", "status", "detail", "fix", "fine", "[red]x[/red]", "[bold]y[/bold]"):
        assert word in text
    assert exit_code(checks) == 1 and exit_code(checks[:1]) == 0
