"""Real components for the integration tests: a throwaway PostgreSQL server, a real S3
endpoint on loopback (moto's server), and the session's Dask cluster for the CLI commands a
test runs."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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


S3_KEYS = {"AWS_ACCESS_KEY_ID": "tidewater-test", "AWS_SECRET_ACCESS_KEY": "tidewater-secret"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """A real S3 HTTP API on 127.0.0.1 (moto's S3 backend, see `s3_server.py`), in its own
    process: delta-rs holds the GIL during some requests, so a server on this process's
    threads would stall them. Its URL; buckets are the tests' own."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("s3_server.py")), str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 endpoint exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the S3 endpoint did not answer on port {port} in {seconds:.0f} s")


@pytest.fixture(scope="session")
def new_s3_bucket(s3_endpoint) -> Callable[[], tuple[str, dict[str, str]]]:
    """Makes a new, empty bucket on the loopback endpoint: its s3:// URI and the storage
    options (delta-rs's spelling) that reach it."""
    import boto3

    options = S3_KEYS | {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1"}
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    )

    def new_bucket() -> tuple[str, dict[str, str]]:
        name = f"tidewater-{secrets.token_hex(4)}"
        client.create_bucket(Bucket=name)
        return f"s3://{name}", dict(options)

    return new_bucket


@pytest.fixture
def s3_bucket(new_s3_bucket) -> tuple[str, dict[str, str]]:
    """A new, empty bucket: its s3:// URI and the storage options that reach it."""
    return new_s3_bucket()
