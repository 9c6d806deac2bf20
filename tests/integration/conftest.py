"""Real components for the integration tests: a throwaway PostgreSQL server, a real S3
endpoint on loopback (moto's server), and the session's Dask cluster for the CLI commands a
test runs."""

from __future__ import annotations

import glob
import json
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
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
REGION = "us-east-1"


@contextmanager
def _process_on_port(script: str, *args: str, log: Path) -> Iterator[str]:
    """`python tests/integration/{script} PORT *args` on a free loopback port: its URL."""
    port = _free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name(script)), str(port), *args],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[1]} exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.args[1]} did not answer on port {port} in {seconds:.0f} s")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """A real S3 HTTP API on 127.0.0.1 (moto's S3 backend, see `s3_server.py`), in its own
    process: delta-rs holds the GIL during some requests, so a server on this process's
    threads would stall them. Its URL; buckets are the tests' own."""
    with _process_on_port("s3_server.py", log=tmp_path_factory.mktemp("moto") / "log") as url:
        yield url


def _s3_client(endpoint: str, service: str = "s3", keys: dict[str, str] = S3_KEYS):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
    )


def _new_bucket(client) -> str:
    name = f"tidewater-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def new_s3_bucket(s3_endpoint) -> Callable[[], tuple[str, dict[str, str]]]:
    """Makes a new, empty bucket on the loopback endpoint: its s3:// URI and the storage
    options (delta-rs's spelling) that reach it."""
    client = _s3_client(s3_endpoint)
    options = S3_KEYS | {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": REGION}
    return lambda: (_new_bucket(client), dict(options))


@pytest.fixture
def s3_bucket(new_s3_bucket) -> tuple[str, dict[str, str]]:
    """A new, empty bucket: its s3:// URI and the storage options that reach it."""
    return new_s3_bucket()


@dataclass
class FaultyRoad:
    """The loopback S3 endpoint behind `s3_faults.py`'s proxy: `url` is the road,
    `set(...)` says what goes wrong on it (and resets the counts), `done()` what went wrong
    and how the endpoint answered."""

    url: str

    def set(self, **faults) -> None:
        httpx.put(f"{self.url}/__faults__", json=faults).raise_for_status()

    def done(self) -> dict:
        return httpx.get(f"{self.url}/__faults__").json()


@pytest.fixture(scope="session")
def faulty_road_to(tmp_path_factory) -> Callable[[str], FaultyRoad]:
    """Puts a faulty road (a proxy process) in front of an S3 endpoint."""
    with ExitStack() as roads:

        def road_to(endpoint: str) -> FaultyRoad:
            log = tmp_path_factory.mktemp("faults") / "log"
            return FaultyRoad(
                roads.enter_context(_process_on_port("s3_faults.py", endpoint, log=log))
            )

        yield road_to


@pytest.fixture
def faulty_s3_bucket(s3_endpoint, faulty_road_to) -> tuple[str, dict[str, str], FaultyRoad]:
    """A new bucket reached through a faulty road (no fault until the test sets some): its
    URI, the storage options that take the road, and the road."""
    road = faulty_road_to(s3_endpoint)
    uri = _new_bucket(_s3_client(s3_endpoint))
    return uri, S3_KEYS | {"AWS_ENDPOINT_URL": road.url, "AWS_REGION": REGION}, road


@pytest.fixture(scope="session")
def s3_checking_keys(tmp_path_factory, faulty_road_to) -> tuple[str, dict[str, str], FaultyRoad]:
    """A second loopback S3 endpoint that checks credentials as AWS does (moto's IAM: a user
    allowed s3:*, its access key; every request signed with it, or refused), with a bucket,
    reached through a road that counts the refusals: the bucket URI, the user's keys, the
    road."""
    log = tmp_path_factory.mktemp("moto-iam") / "log"
    with _process_on_port("s3_server.py", log=log) as endpoint:
        iam = _s3_client(endpoint, "iam")
        iam.create_user(UserName="tidewater")
        allow_s3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        iam.put_user_policy(UserName="tidewater", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [allow_s3]}))  # fmt: skip
        key = iam.create_access_key(UserName="tidewater")["AccessKey"]
        keys = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}  # fmt: skip
        uri = _new_bucket(_s3_client(endpoint, keys=keys))
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        road = faulty_road_to(endpoint)
        yield uri, keys | {"AWS_ENDPOINT_URL": road.url, "AWS_REGION": REGION}, road
