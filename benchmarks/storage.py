"""Storage benchmark: one day of 1M rows through the pipeline on local disk, then on S3.

    python -m benchmarks.storage                  # the README figures (1M rows)
    python -m benchmarks.storage --rows 200000    # a quick look

What runs, per store, as a user runs it, in a fresh `TIDEWATER_HOME`; on S3 every location
(landing, lake, reports, the registry's model files) is in a new bucket of a loopback S3
endpoint, and MLflow's tracking database stays under the home:

* not timed: `tidewater serve` (Prefect server, Dask cluster of one worker process per
  core, reports server, worker), `tidewater land adult --days 1` and `tidewater train` on
  that day, so that no store pays for the first model; then one day of `--rows` synthetic
  Adult rows landed as one CSV file;
* timed: `tidewater run adult --ds D` for that day (a new process: imports, the store's
  credentials check, the API, then ingest, validate, score on the cluster, monitor and the
  row accounting).

The S3 endpoint is moto's S3 in its own process (`tests/integration/s3_server.py`, the
tests' endpoint): objects in the memory of one Python process that serves one request at a
time, over loopback. Real S3 answers many requests at once with more latency each; the ratio
says what the store's round trips and copies cost this code, not what AWS would.

Reported: the run's wall seconds on each store, the stages' seconds from the ledger, and
S3 / local.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
S3_SERVER = Path(__file__).parents[1] / "tests" / "integration" / "s3_server.py"
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
BOOTSTRAP_DAY, DAY = "2024-01-01", "2024-01-02"
STAGES = ("ingest", "validate", "score", "monitor", "pipeline")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tidewater(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tidewater {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


@contextmanager
def loopback_s3():
    """moto's S3 on a free loopback port (its URL), until the block ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(S3_SERVER), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _s3_settings(endpoint: str) -> dict[str, str]:
    """TIDEWATER_* variables putting every location in a new bucket of `endpoint`."""
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
                 ).create_bucket(Bucket="tidewater-bench")  # fmt: skip
    options = KEYS | {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"}
    locations = ("landing", "lake", "reports", "models")
    return {f"TIDEWATER_{name.upper()}_URI": f"s3://tidewater-bench/{name}" for name in locations
            } | {"TIDEWATER_STORAGE_OPTIONS": json.dumps(options)}  # fmt: skip


def _settings_of(env: dict[str, str]):
    """The settings a `tidewater` command started with `env` reads."""
    from flows.settings import Settings

    return Settings(**{key.removeprefix("TIDEWATER_").lower(): value
                       for key, value in env.items() if key.startswith("TIDEWATER_")})  # fmt: skip


def land_day(env: dict[str, str], rows: int) -> None:
    """`rows` synthetic Adult rows as one landed CSV file of DAY, through the store."""
    from datasets import adult
    from flows.resources import store_of

    settings = _settings_of(env)
    frame = adult.synthesize(rows, seed=7)
    frame = frame[[column for column in frame.columns if not column.startswith("_")]]
    uri = f"{settings.landing_uri}/adult/ds={DAY}/part-0001.csv"
    adult.write_landing_file(frame, uri, "csv", store_of(settings).fsspec_options(uri))


def stage_seconds(env: dict[str, str]) -> dict[str, float]:
    """Each stage's wall seconds in DAY's latest run, from the ledger."""
    from flows.resources import lake_of
    from tasks.ledger import read_ledger

    settings = _settings_of(env)
    ledger = read_ledger(lake_of(settings), "adult", DAY)
    latest = ledger.groupby("stage").tail(1).set_index("stage")["wall_seconds"]
    return {stage: float(latest.get(stage, float("nan"))) for stage in STAGES}


@contextmanager
def served_day(name: str, rows: int, settings_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh home served as a user serves it (`tidewater serve`), a bootstrap day landed and
    trained on, and DAY landed with `rows` synthetic Adult rows: the environment of the
    `tidewater` commands the block runs there; stopped and removed after it."""
    home = Path(tempfile.mkdtemp(prefix=f"tidewater-bench-{name}-"))
    env = os.environ | settings_env | {"TIDEWATER_HOME": str(home), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)  # the embedded server `serve` starts in this home
    try:
        _log(f"{name}: serve, land and train on {BOOTSTRAP_DAY}, land {rows:,} rows on {DAY}")
        tidewater(env, "serve")
        tidewater(env, "land", "adult", "--start", BOOTSTRAP_DAY, "--days", "1")
        tidewater(env, "train", "adult", "--start", BOOTSTRAP_DAY, "--days", "1")
        land_day(env, rows)
        yield env
    finally:
        subprocess.run([TIDEWATER, "serve", "--stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def one_store(name: str, rows: int, settings_env: dict[str, str]) -> tuple[float, dict]:
    with served_day(f"storage-{name}", rows, settings_env) as env:
        wall = tidewater(env, "run", "adult", "--ds", DAY)
        stages = stage_seconds(env)
    _log(f"{name}: tidewater run {wall:.1f} s")
    return wall, stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    results = {"local disk": one_store("local", args.rows, {})}
    with loopback_s3() as endpoint:
        results["loopback S3"] = one_store("s3", args.rows, _s3_settings(endpoint))
    print(f"\none day of {args.rows:,} Adult rows, `tidewater run`, {os.cpu_count()} cores")
    print(f"{'store':12} {'wall s':>7} " + " ".join(f"{stage:>9}" for stage in STAGES))
    for name, (wall, stages) in results.items():
        print(f"{name:12} {wall:7.1f} " + " ".join(f"{stages[s]:9.1f}" for s in STAGES))
    (local, _), (s3, _) = results.values()
    print(f"S3 / local: {s3 / local:.2f}x the wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
