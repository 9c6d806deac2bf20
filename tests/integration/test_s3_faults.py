"""S3 misbehaving, on a real endpoint (moto's, on loopback) behind a faulty road
(`s3_faults.py`): throttled requests and lost answers to commits that landed leave the lake
and a day's run converged, with nothing twice and nothing lost; refused credentials are one
clear error naming the store; credentials may come from a Prefect block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from datasets import get_dataset
from flows.pipeline import pipeline
from flows.resources import check_storage, lake_of, store_of
from flows.settings import Settings, use_settings
from tasks.lake import Lake
from tasks.storage import StorageAccessDenied, StorageConfigError, Store

pytestmark = pytest.mark.integration

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
DATASET = "adult"


def _rows(ds: str, count: int, tag: str = "") -> pa.Table:
    ids = [f"{ds}-{tag}{i}" for i in range(count)]
    return pa.table({"_row_id": ids, "value": list(range(count)), "ds": [ds] * count})


def _commits_per_slice(lake: Lake) -> dict[str, int]:
    history = lake.table("silver", DATASET).history()
    slices = [entry["tidewater.slice"] for entry in history if "tidewater.slice" in entry]
    return {key: slices.count(key) for key in set(slices)}


def test_commits_converge_when_requests_are_throttled_and_commit_answers_lost(
    faulty_s3_bucket,
):
    root, options, road = faulty_s3_bucket
    road.set(slowdown=0.1, drop_commits=4, drop_every=2, seed=7)
    lake = Lake(f"{root}/lake", Store.from_options(options, environ={}))
    days = [f"2024-02-{n:02d}" for n in range(1, 7)]
    for n, ds in enumerate(days):
        lake.replace_slice("silver", DATASET, _rows(ds, 3 + n), {"ds": ds}, run_id="first")
    lake.replace_slice("silver", DATASET, _rows(days[0], 9, "again"), {"ds": days[0]},
                       run_id="again")  # fmt: skip
    for n in range(3):
        lake.append("ledger", None, _rows(days[0], 1, f"entry{n}"), run_id=f"run-{n}")
    for _ in range(2):
        lake.append_once("ledger", None, _rows(days[1], 1, "once"), key="k", run_id="once",
                         partition_by=())  # fmt: skip

    faults = road.done()
    assert faults["slowed"] >= 5 and faults["dropped"] == 4, faults  # the faults did happen
    assert _commits_per_slice(lake) == {f"ds={ds}": 2 if ds == days[0] else 1 for ds in days}
    silver = lake.read("silver", DATASET).to_pandas()
    assert silver.groupby("ds").size().to_dict() == {ds: 9 if n == 0 else 3 + n
                                                    for n, ds in enumerate(days)}  # fmt: skip
    assert silver["_row_id"].is_unique
    ledger = lake.read("ledger").to_pandas()
    assert sorted(ledger["_row_id"]) == sorted(
        [f"{days[0]}-entry{n}0" for n in range(3)] + [f"{days[1]}-once0"]
    )


def _settings_on(root: str, options: dict, home: Path, **more) -> Settings:
    uris = {f"{name}_uri": f"{root}/{name}" for name in ("landing", "lake", "reports", "models")}
    return Settings(home=home, storage_options=options, **uris, **more)


def _day_tables(settings: Settings, ds: str) -> dict[str, list[str]]:
    lake = lake_of(settings)
    return {
        name: sorted(lake.read(name, DATASET, where={"ds": ds}).column("_row_id").to_pylist())
        for name in ("bronze", "rejects", "silver", "quarantine", "predictions")
    }


@pytest.mark.slow  # about 3 min: two runs of a day, every request over the faulty road
def test_a_day_on_s3_converges_through_throttling_and_lost_commit_answers(
    faulty_s3_bucket, tmp_path, dask_address
):
    root, options, road = faulty_s3_bucket
    settings = _settings_on(root, options, tmp_path / "home", dask_address=dask_address)
    get_dataset(DATASET).land(settings.landing_uri, date(2024, 3, 1), 1,
                              storage_options=store_of(settings).fsspec_options(root))  # fmt: skip
    road.set(slowdown=0.1, drop_commits=6, drop_every=3, seed=11)
    with use_settings(settings):
        first = pipeline(DATASET, "2024-03-01")  # its own accounting check passed
        tables = _day_tables(settings, "2024-03-01")
        again = pipeline(DATASET, "2024-03-01")
    faults = road.done()
    assert faults["slowed"] >= 20 and faults["dropped"] == 6, faults
    assert first["landed"] == again["landed"] > 0
    for key in ("bronze", "rejects", "silver", "quarantine", "predictions"):
        assert first[key] == again[key] == len(tables[key]), key
        assert len(set(tables[key])) == len(tables[key]), f"{key} holds a row twice"
    assert first["landed"] == first["bronze"] + first["rejects"]
    assert first["bronze"] == first["silver"] + first["quarantine"]
    assert first["silver"] == first["predictions"]
    assert _day_tables(settings, "2024-03-01") == tables  # the rerun replaced, nothing added


def _cli(*args: str, settings_env: dict[str, str], home: Path, api: str):
    env = os.environ | settings_env | {
        "TIDEWATER_HOME": str(home), "PREFECT_API_URL": api, "COLUMNS": "400"}  # fmt: skip
    return subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True)


def test_refused_credentials_are_one_clear_error_naming_the_store(
    s3_checking_keys, tmp_path, prefect_api
):
    root, options, road = s3_checking_keys
    wrong = options | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    uris = {f"TIDEWATER_{name.upper()}_URI": f"{root}/{name}" for name in ("landing", "lake")}
    road.set()
    done = _cli("run", DATASET, "--ds", "2024-05-02", home=tmp_path, api=prefect_api,
                settings_env=uris | {"TIDEWATER_STORAGE_OPTIONS": json.dumps(wrong)})  # fmt: skip
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr
    assert (
        f"{root}/landing (S3 at {road.url}, region us-east-1) refused the credentials "
        "(SignatureDoesNotMatch)" in said
    )
    assert "Traceback" not in done.stderr and "not-the-secret" not in done.stdout + said
    assert road.done()["answers"] == {"403 SignatureDoesNotMatch": 1}  # asked once, no retry


def test_a_flow_run_with_refused_credentials_fails_once_naming_the_store(
    s3_checking_keys, tmp_path, prefect_api
):
    """As a deployment's run on a worker: the flow checks the store before writing."""
    root, options, road = s3_checking_keys
    unknown = options | {"AWS_ACCESS_KEY_ID": "AKIANOTAKEY"}
    settings = _settings_on(root, unknown, tmp_path / "home")
    road.set()
    with use_settings(settings), pytest.raises(StorageAccessDenied) as refused:
        pipeline(DATASET, "2024-05-02")
    assert str(refused.value).startswith(
        f"{root}/landing (S3 at {road.url}, region us-east-1) refused the credentials "
        "(InvalidAccessKeyId)"
    )
    refusals = road.done()["answers"]
    # the check, then the end-of-run hook's ledger row: its table's load, then its commit
    assert set(refusals) == {"403 InvalidAccessKeyId"} and refusals["403 InvalidAccessKeyId"] <= 3


def _make_block(slug: str, name: str, data: dict) -> None:
    """A Prefect block document of type `slug` on the session's server, as the UI makes
    one (prefect-aws need not be installed: the server knows its block types)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate

    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug(slug)
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
        client.create_block_document(
            BlockDocumentCreate(
                name=name, data=data, block_type_id=block_type.id, block_schema_id=schema.id
            )
        )


def test_credentials_come_from_an_aws_credentials_or_a_secret_block(
    s3_checking_keys, tmp_path, prefect_api
):
    root, options, _ = s3_checking_keys
    aws, secret = f"s3-{uuid.uuid4().hex[:8]}", f"s3-options-{uuid.uuid4().hex[:8]}"
    _make_block("aws-credentials", aws, {
        "aws_access_key_id": options["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": options["AWS_SECRET_ACCESS_KEY"],
        "region_name": options["AWS_REGION"],
        "aws_client_parameters": {"endpoint_url": options["AWS_ENDPOINT_URL"]},
    })  # fmt: skip
    _make_block("secret", secret, {"value": json.dumps(options)})
    for block in (f"aws-credentials/{aws}", f"secret/{secret}"):
        settings = _settings_on(root, {}, tmp_path / block, storage_block=block)
        assert store_of(settings) == Store.from_options(options, environ={})
        check_storage(settings)  # accepted
        lake = lake_of(settings)
        ds = "2024-06-01"
        lake.replace_slice("silver", DATASET, _rows(ds, 2, block), {"ds": ds}, run_id="r")
        assert lake.read("silver", DATASET).column("_row_id").to_pylist()[0].startswith(ds)
    with pytest.raises(StorageConfigError, match="no Prefect block secret/absent"):
        store_of(_settings_on(root, {}, tmp_path, storage_block="secret/absent"))
