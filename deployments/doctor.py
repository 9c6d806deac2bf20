"""`tidewater doctor`: checks the Prefect API (and its UI settings), the worker pool, Dask,
read/write on landing/lake/reports/models, the model registry, the GPU and the pinned
versions, and says what is wrong and how to fix it.

Usage (what the CLI's `doctor` command does)::

    from deployments.doctor import exit_code, render_checks, run_checks

    checks = run_checks(settings, api_url=os.environ.get("PREFECT_API_URL"),
                        dask_address=settings.dask_address)
    console.print(render_checks(checks))
    raise typer.Exit(exit_code(checks))

Each `check_*` function takes explicit inputs and returns one `Check`; `run_checks` runs them
all and turns a check that crashes into a `fail`. Third-party imports are made inside the
checks: a broken environment is what the doctor must still be able to report.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import platform
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

from tasks.storage import LOCAL, Store

if TYPE_CHECKING:
    from rich.table import Table

    from flows.settings import Settings

Status = Literal["ok", "warn", "fail"]

# Prefect's server marks a worker offline after this many missed heartbeats.
HEARTBEAT_MULTIPLE = 3
DEFAULT_HEARTBEAT_SECONDS = 30
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_START_SERVER = "run `tidewater serve`, or set PREFECT_API_URL to your server"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was found and, when something is wrong, what to do."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# --- Prefect --------------------------------------------------------------------------


def _get(url: str, auth_string: str | None, timeout: float) -> tuple[int, bytes]:
    """GET `url` with Prefect's basic auth; (status, body) for any HTTP answer, OSError when
    nothing answers."""
    request = urllib.request.Request(url)
    if auth_string:
        token = base64.b64encode(auth_string.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _unauthorized(api_url: str, auth_string: str | None) -> Check:
    said = "refused PREFECT_API_AUTH_STRING" if auth_string else "wants basic auth"
    return Check(
        "Prefect API",
        "fail",
        f"{api_url} {said} (HTTP 401)",
        "set PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING "
        "('user:password')",
    )


def check_prefect_api(
    api_url: str | None, *, auth_string: str | None = None, timeout: float = 5.0
) -> Check:
    """The API answers `/health`, and accepts our credentials (`/admin/version`, which,
    unlike `/health`, needs them)."""
    name = "Prefect API"
    if not api_url:
        return Check(
            name,
            "warn",
            "no PREFECT_API_URL; the CLI starts an embedded server",
            "set PREFECT_API_URL to check a shared server",
        )
    api_url = api_url.rstrip("/")
    try:
        status, _ = _get(f"{api_url}/health", auth_string, timeout)
    except (OSError, ValueError) as error:  # ValueError: not an http(s) URL
        return Check(name, "fail", f"nothing answers at {api_url}: {_error(error)}", _START_SERVER)
    if status != 200:
        fix = _START_SERVER
        if not api_url.endswith("/api"):
            fix = f"PREFECT_API_URL names the API, usually ending in /api ({api_url}/api?)"
        return Check(name, "fail", f"{api_url}/health answered HTTP {status}", fix)
    status, body = _get(f"{api_url}/admin/version", auth_string, timeout)
    if status == 401:
        return _unauthorized(api_url, auth_string)
    if status != 200:
        return Check(name, "fail", f"{api_url}/admin/version answered HTTP {status}", None)
    auth = "basic auth" if auth_string else "no auth"
    return Check(name, "ok", f"{api_url} answers (server {json.loads(body)}, {auth})")


def _same_endpoint(a: str, b: str) -> bool:
    """Two API URLs reach the same server from this machine (loopback names are one host)."""
    ua, ub = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))
    hosts = [u.hostname or "" for u in (ua, ub)]
    ports = [u.port or _DEFAULT_PORTS.get(u.scheme) for u in (ua, ub)]
    same_host = hosts[0] == hosts[1] or set(hosts) <= _LOOPBACK
    return ua.scheme == ub.scheme and same_host and ports[0] == ports[1] and ua.path == ub.path


def check_prefect_ui(
    api_url: str | None,
    *,
    ui_url: str | None = None,
    auth_string: str | None = None,
    timeout: float = 5.0,
) -> Check:
    """The UI's `/ui-settings` names the API we use (a UI calling another address shows
    "Can't connect to Server API"); reports its CSRF and auth settings."""
    name = "Prefect UI"
    if not api_url:
        return Check(name, "warn", "not checked: no PREFECT_API_URL", None)
    api_url = api_url.rstrip("/")
    ui_url = (ui_url or api_url.removesuffix("/api")).rstrip("/")
    try:
        status, body = _get(f"{ui_url}/ui-settings", auth_string, timeout)
    except OSError as error:
        return Check(name, "fail", f"nothing answers at {ui_url}: {_error(error)}", _START_SERVER)
    if status == 404:
        return Check(
            name,
            "warn",
            f"{ui_url} serves no UI settings (UI disabled?)",
            "set PREFECT_UI_ENABLED=true on the server to get the UI",
        )
    if status != 200:
        return Check(name, "fail", f"{ui_url}/ui-settings answered HTTP {status}", None)
    ui = json.loads(body)
    ui_api = urljoin(f"{ui_url}/", ui["api_url"])
    security = f"CSRF {'on' if ui.get('csrf_enabled') else 'off'}, auth {ui.get('auth') or 'none'}"
    if not _same_endpoint(ui_api, api_url):
        port = urlsplit(api_url).port
        return Check(
            name,
            "fail",
            f"the UI at {ui_url} calls {ui_api}, not {api_url} ({security})",
            f"on the server set PREFECT_UI_API_URL={api_url} (or PREFECT_SERVER_API_PORT="
            f"{port} for the port it listens on) and restart it",
        )
    return Check(name, "ok", f"{ui_url} calls {ui_api} ({security})")


def check_work_pool(
    api_url: str | None, work_pool: str = "tidewater", *, now: datetime | None = None
) -> Check:
    """The work pool exists, is not paused, and has a worker with a recent heartbeat."""
    name = f"work pool {work_pool}"
    if not api_url:
        return Check(name, "warn", "not checked: no PREFECT_API_URL", None)
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read():
        with temporary_settings({PREFECT_API_URL: api_url}):
            async with get_client() as client:
                try:
                    pool = await client.read_work_pool(work_pool)
                except ObjectNotFound:
                    return None, []
                return pool, await client.read_workers_for_work_pool(work_pool)

    pool, workers = run_coro_as_sync(read())
    if pool is None:
        return Check(
            name,
            "fail",
            f"no work pool {work_pool!r} on {api_url}",
            f"`tidewater deploy` (or `prefect work-pool create {work_pool} --type process`)",
        )
    if pool.is_paused:
        return Check(
            name, "warn", f"{pool.type} pool is paused", f"`prefect work-pool resume {work_pool}`"
        )
    now = now or datetime.now(UTC)
    online = []
    for worker in workers:
        beat = worker.last_heartbeat_time
        if beat is None:
            continue
        beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
        interval = worker.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
        if now - beat <= timedelta(seconds=HEARTBEAT_MULTIPLE * interval):
            online.append(worker.name)
    if not online:
        return Check(
            name,
            "warn",
            f"{pool.type} pool, but no worker has sent a recent heartbeat "
            f"({len(workers)} known): scheduled runs will wait",
            f"`tidewater serve` starts a worker, or `prefect worker start --pool {work_pool}`",
        )
    return Check(name, "ok", f"{pool.type} pool, {len(online)} worker(s) online: {online[0]}")


# --- Dask ----------------------------------------------------------------------------


def _version_mismatches(versions: Mapping[str, Any]) -> list[str]:
    """Packages whose version differs between this process and the scheduler or a worker."""
    ours = versions["client"]["packages"]
    theirs = [versions["scheduler"], *versions["workers"].values()]
    found = set()
    for other in theirs:
        packages = (other or {}).get("packages", {})
        for package, version in packages.items():
            if package in ours and version != ours[package]:
                found.add(f"{package} {ours[package]} here, {version} on the cluster")
    return sorted(found)


def check_dask(address: str | None, *, timeout: float = 5.0) -> Check:
    """The scheduler at `address` answers; its workers, threads and package versions."""
    name = "Dask"
    if not address:
        return Check(
            name, "ok", "no TIDEWATER_DASK_ADDRESS: a local cluster is started per command"
        )
    from distributed import Client

    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as error:  # noqa: BLE001 - unreachable, refused, malformed: all the finding
        return Check(
            name,
            "fail",
            f"no Dask scheduler answers at {address}: {_error(error)}",
            "check TIDEWATER_DASK_ADDRESS (unset it to start a local cluster per command), "
            "or run `tidewater serve`",
        )
    with client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        threads = sum(worker["nthreads"] for worker in workers.values())
        mismatches = _version_mismatches(client.get_versions())
    found = f"{address}: {len(workers)} workers, {threads} threads"
    if not workers:
        return Check(name, "warn", f"{found}: shard tasks will wait", "start workers for it")
    if mismatches:
        return Check(
            name,
            "warn",
            f"{found}; versions differ: {'; '.join(mismatches)}",
            "install the same locked environment (`make env`) on the scheduler and workers",
        )
    return Check(name, "ok", found)


# --- storage and models ----------------------------------------------------------------


def check_storage(label: str, uri: str, store: Store = LOCAL) -> Check:
    """Write, read back and delete a probe file under `uri` (fsspec)."""
    name = f"storage {label}"
    probe_name = f"_doctor-probe-{uuid.uuid4().hex}"
    payload = probe_name.encode()
    try:
        fs, root = store.filesystem(uri)
        local = "file" in fs.protocol or "local" in fs.protocol
        if local:
            # Object stores have no folders, and creating one there could create a bucket.
            fs.makedirs(root, exist_ok=True)
        probe = f"{root.rstrip('/')}/{probe_name}"
        fs.pipe_file(probe, payload)
        try:
            read = fs.cat_file(probe)
        finally:
            fs.rm_file(probe)
    except Exception as error:  # noqa: BLE001 - any failure is the finding
        how = (
            "check that the folder (and its parents) can be created and written by this user"
            if "://" not in uri or uri.startswith("file:")
            else "check the bucket exists and the credentials (AWS_* variables or "
            "TIDEWATER_STORAGE_OPTIONS) allow read, write and delete"
        )
        return Check(
            name,
            "fail",
            f"cannot write, read and delete under {store.describe(uri)}: {_error(error)}",
            f"{how}, or point TIDEWATER_{label.upper()}_URI elsewhere",
        )
    if read != payload:
        return Check(name, "fail", f"{uri}: a probe file read back different bytes", None)
    return Check(name, "ok", f"{uri}: write, read, delete")


def check_model_registry(tracking_uri: str, models_uri: str = "", store: Store = LOCAL) -> Check:
    """The MLflow registry answers; every dataset's aliases (champion, challenger) name a
    version whose bytes match the checksum the registry holds; reports which datasets have
    a champion."""
    from tasks.registry import PREFIX, ModelRegistry

    name = "model registry"
    if models_uri:
        store.filesystem(models_uri)  # the artifact root's protocol is known
    if tracking_uri.startswith("sqlite:///"):
        database = tracking_uri.removeprefix("sqlite:///")
        if not os.path.exists(database):
            return Check(
                name, "ok", f"no registry yet at {database}; a first run creates it and trains"
            )
    registry = ModelRegistry(tracking_uri, models_uri, store)
    models = registry.client.search_registered_models(f"name LIKE '{PREFIX}-%'")
    datasets = sorted(model.name.removeprefix(f"{PREFIX}-") for model in models)
    if not datasets:
        return Check(name, "ok", f"no models yet in {tracking_uri}; a first run trains one")
    found, problems, without_champion = [], [], []
    for dataset in datasets:
        versions = registry.versions(dataset)
        aliases = registry.aliases(dataset)
        for alias, version in sorted(aliases.items()):
            try:
                registry.load(dataset, version)
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                problems.append(f"{dataset} {alias} {version}: {_error(error)}")
        if "champion" in aliases:
            found.append(f"{dataset} champion {aliases['champion']} of {len(versions)}")
        elif versions:
            without_champion.append(dataset)
    summary = "; ".join(found) or "no champion yet"
    train = "`tidewater train DATASET --start YYYY-MM-DD --days N` trains and promotes one"
    if problems:
        return Check(name, "fail", f"{'; '.join(problems)} ({summary})", train)
    if without_champion:
        return Check(
            name,
            "warn",
            f"no champion for {', '.join(without_champion)} ({summary})",
            train,
        )
    return Check(name, "ok", f"{tracking_uri}: {summary}")


# --- GPU and versions -----------------------------------------------------------------


def check_gpu(device: str = "auto") -> Check:
    """Which kernels run: CUDA (CuPy) when a device accepts an allocation, else the Numba CPU
    twins; `device` is TIDEWATER_DEVICE."""
    from kernels.device import gpu_available

    name = "GPU"
    if gpu_available():
        import cupy

        runtime = cupy.cuda.runtime
        names = []
        for index in range(runtime.getDeviceCount()):
            label = runtime.getDeviceProperties(index)["name"]
            names.append(label.decode() if isinstance(label, bytes) else str(label))
        detail = f"{len(names)} GPU(s): {', '.join(names)}; CUDA kernels (CuPy {cupy.__version__})"
        if device == "cpu":
            detail += "; TIDEWATER_DEVICE=cpu keeps kernels on the CPU"
        if importlib.util.find_spec("dask_cuda") is None:
            return Check(
                name,
                "warn",
                f"{detail}; dask-cuda is not installed: local clusters get CPU workers",
                "`make gpu-env` (uv sync --frozen --extra gpu)",
            )
        return Check(name, "ok", detail)
    if device == "gpu":
        return Check(
            name,
            "fail",
            "TIDEWATER_DEVICE=gpu but no CUDA device is usable",
            "set TIDEWATER_DEVICE=auto (or cpu), or run where a GPU is visible",
        )
    if importlib.util.find_spec("cupy") is not None:
        return Check(
            name,
            "warn",
            "CuPy is installed but no CUDA device accepts an allocation: CPU kernels (Numba)",
            "check the driver and CUDA_VISIBLE_DEVICES (`nvidia-smi`); cupy-cuda13x needs a "
            "CUDA 13 driver",
        )
    return Check(name, "ok", "no GPU: CPU kernels (Numba)")


def _extras_of(marker: str) -> list[str]:
    return re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)


def check_versions(
    distribution: str = "tidewater", *, requirements: Iterable[str] | None = None
) -> Check:
    """Installed packages satisfy the project's pins (its installed metadata, or the given
    `requirements`); an extra's pins count only when that extra's package is installed."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    name = "versions"
    fix = "`make env` (or `uv sync --frozen`; `make gpu-env` with the gpu extra)"
    problems = []
    if requirements is None:
        try:
            requirements = metadata.requires(distribution) or []
            python_pin = metadata.metadata(distribution).get("Requires-Python")
        except metadata.PackageNotFoundError:
            return Check(name, "fail", f"{distribution} is not installed here", fix)
        if python_pin and not SpecifierSet(python_pin).contains(platform.python_version()):
            problems.append(f"python {platform.python_version()} (wants {python_pin})")
    checked = 0
    for line in requirements:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            installed = None
        marker = requirement.marker
        if marker is not None and not marker.evaluate({"extra": ""}):
            extras = _extras_of(str(marker))
            wanted = any(marker.evaluate({"extra": extra}) for extra in extras)
            if not wanted or installed is None:
                continue
        checked += 1
        if installed is None:
            problems.append(f"{requirement.name} missing (wants {requirement.specifier})")
        elif not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name} {installed} (wants {requirement.specifier})")
    if problems:
        return Check(name, "fail", "; ".join(problems), fix)
    return Check(name, "ok", f"{checked} pinned packages match")


# --- running and showing --------------------------------------------------------------


def _guarded(name: str, check: Callable[..., Check], *args: Any, **kwargs: Any) -> Check:
    """`check(*args, **kwargs)`, or a `fail` naming the error when the check itself crashes."""
    try:
        return check(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the doctor reports, it does not crash
        return Check(name, "fail", f"the check crashed: {_error(error)}", None)


def _redact(text: str | None, secrets: Iterable[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _maybe_secret(value: Any) -> bool:
    """Option values worth masking: flags and tiny values are not credentials."""
    return isinstance(value, str) and len(value) >= 4 and value.lower() not in {"true", "false"}


def _prefect_auth_string() -> str | None:
    try:
        from prefect.settings import PREFECT_API_AUTH_STRING

        value = PREFECT_API_AUTH_STRING.value()
    except Exception:  # noqa: BLE001 - a broken Prefect install is reported by the API check
        return None
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value or None


def run_checks(
    settings: Settings,
    *,
    api_url: str | None,
    dask_address: str | None,
    work_pool: str = "tidewater",
    store: Store | None = None,
) -> list[Check]:
    """Every check, in order; a check that crashes becomes a `fail`. Secrets (the store's
    credentials, the Prefect auth string) are masked in every detail and fix. `store` is
    the resolved store (default: the settings' own options')."""
    auth = _prefect_auth_string()
    checks = [_guarded("Prefect API", check_prefect_api, api_url, auth_string=auth)]
    if checks[0].status == "fail":
        skipped = "not checked: the Prefect API does not answer"
        checks += [
            Check("Prefect UI", "warn", skipped, None),
            Check(f"work pool {work_pool}", "warn", skipped, None),
        ]
    else:
        checks += [
            _guarded("Prefect UI", check_prefect_ui, api_url, auth_string=auth),
            _guarded(f"work pool {work_pool}", check_work_pool, api_url, work_pool),
        ]
    checks.append(_guarded("Dask", check_dask, dask_address))
    if store is None:
        store = Store.from_options(settings.storage_options.get_secret_value())
    for label in ("landing", "lake", "reports", "models"):
        uri = getattr(settings, f"{label}_uri")
        checks.append(_guarded(f"storage {label}", check_storage, label, uri, store))
    checks += [
        _guarded(
            "model registry",
            check_model_registry,
            settings.tracking_uri,
            settings.models_uri,
            store,
        ),
        _guarded("GPU", check_gpu, settings.device),
        _guarded("versions", check_versions),
    ]
    secrets = [value for value in store.secret_values() if _maybe_secret(value)]
    secrets += [auth] if auth else []
    return [
        replace(c, detail=_redact(c.detail, secrets), fix=_redact(c.fix, secrets)) for c in checks
    ]


_COLOURS = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def render_checks(checks: Iterable[Check]) -> Table:
    """The checks as a table: check, status (coloured), detail, fix."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="tidewater doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    for check in checks:
        table.add_row(
            Text(check.name),
            Text(check.status, style=_COLOURS[check.status]),
            Text(check.detail),
            Text(check.fix or ""),
        )
    return table


def exit_code(checks: Iterable[Check]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(check.status == "fail" for check in checks) else 0
