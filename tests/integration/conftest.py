"""Real components for the integration tests: a throwaway PostgreSQL server, and the
session's Dask cluster for the CLI commands a test runs."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def cli_on_session_cluster(dask_address, monkeypatch) -> str:
    """CLI commands the test starts score on the session's cluster (as a production CLI uses
    TIDEWATER_DASK_ADDRESS) instead of starting a cluster each."""
    monkeypatch.setenv("TIDEWATER_DASK_ADDRESS", dask_address)
    return dask_address


def _postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (package `postgresql`), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version, reverse=True)
    return Path(found[0]).parent if found else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL server on a free loopback port, with an empty database `prefect`;
    yields its `postgresql+asyncpg://` URL (password authentication) and stops it after."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user.
    root = Path(tempfile.mkdtemp(prefix="tidewater-pg-"))
    password = secrets.token_urlsafe(16)
    (root / "password").write_text(password)
    if as_user:
        for path in (root, root / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()

    def run(binary: str, *args: str) -> None:
        subprocess.run(
            [*as_user, str(bin_dir / binary), *args],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=root,
        )

    # Durability is not under test: no fsync keeps the shared 2-core machine responsive.
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    log = root / "postgres.log"
    auth = [f"--pwfile={root / 'password'}", "--auth-host=scram-sha-256", "--auth-local=trust"]
    try:
        try:
            run("initdb", "-D", str(data), "-E", "UTF8", "--no-sync", "-U", "tidewater", *auth)
            run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
            run("createdb", "-h", str(root), "-p", str(port), "-U", "tidewater", "prefect")
        except subprocess.CalledProcessError as error:
            detail = error.stderr.decode(errors="replace")
            if log.exists():
                detail += log.read_text()
            raise RuntimeError(f"test PostgreSQL did not start: {error}\n{detail}") from None
        yield f"postgresql+asyncpg://tidewater:{password}@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)
