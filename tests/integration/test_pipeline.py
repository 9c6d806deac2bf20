"""The daily pipeline end to end on real components: a Prefect server, a Dask cluster of
worker processes and Delta tables, with landing, lake, reports and registry artifacts on disk
and again on a real S3 endpoint (moto's, on loopback). Each test reads like one invariant of
DESIGN.md."""

from __future__ import annotations

import gzip
from datetime import date
from functools import partial

import pandas as pd
import pytest

from datasets import adult, get_dataset, row_id
from flows.pipeline import StageNotDone, pipeline
from flows.resources import lake_of, registry_of, store_of
from flows.settings import Settings, use_settings
from tasks.lake import RUN_ID_KEY
from tasks.ledger import read_ledger

pytestmark = pytest.mark.integration

DATASET = "adult"
CLEAN_DAYS = ["2024-01-01", "2024-01-02"]
DRIFT_DAY = "2024-01-06"
RUN_STAMPS = ["_run_id", "_ingested_at", "_scored_at"]


# On S3 the module takes about 4 min more: it runs with the slow cases (CI, make test-slow).
@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def settings(request, tmp_path_factory, dask_address) -> Settings:
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, dask_address=dask_address)
    if request.param == "s3":
        settings = Settings(home=home, dask_address=dask_address, **_on_s3(request))
    get_dataset(DATASET).land(
        settings.landing_uri,
        date(2024, 1, 1),
        8,
        drift_from=date.fromisoformat(DRIFT_DAY),
        storage_options=store_of(settings).fsspec_options(settings.landing_uri),
    )
    with use_settings(settings):
        yield settings


def _on_s3(request) -> dict:
    """Settings that put landing, lake, reports and the registry's artifacts in a new bucket
    of the loopback S3 endpoint (MLflow's tracking database stays under the home)."""
    root, options = request.getfixturevalue("new_s3_bucket")()
    uris = {f"{name}_uri": f"{root}/{name}" for name in ("landing", "lake", "reports", "models")}
    return {"storage_options": options, **uris}


def land_file(settings: Settings, frame: pd.DataFrame, uri: str, fmt: str = "csv") -> str:
    options = store_of(settings).fsspec_options(uri)
    return adult.write_landing_file(frame, uri, fmt, options)


@pytest.fixture(scope="module")
def runs(settings) -> dict[str, dict]:
    return {ds: pipeline(DATASET, ds) for ds in [*CLEAN_DAYS, DRIFT_DAY]}


def table(settings, name: str, ds: str, **where) -> pd.DataFrame:
    frame = lake_of(settings).read(name, DATASET, where={"ds": ds, **where}).to_pandas()
    return frame.sort_values("_row_id").reset_index(drop=True)


def content(settings, name: str, ds: str) -> pd.DataFrame:
    frame = table(settings, name, ds)
    return frame.drop(columns=[c for c in RUN_STAMPS if c in frame])


def test_every_landed_row_is_accounted_for(settings, runs):
    for ds, run in runs.items():
        ingest = read_ledger(lake_of(settings), DATASET, ds).query("stage == 'ingest'").iloc[-1]
        records = sum(f["records"] + f["rejects"] for f in ingest["files"])
        assert run["landed"] == records == run["bronze"] + run["rejects"]
        assert run["bronze"] == len(table(settings, "bronze", ds))
        assert run["bronze"] == run["silver"] + run["quarantine"]
        assert run["silver"] == run["predictions"] == len(table(settings, "silver", ds))


def test_malformed_lines_are_kept_in_rejects_with_their_text(settings, runs):
    rejects = table(settings, "rejects", "2024-01-02")
    assert len(rejects) == adult.MALFORMED_BAD_LINES
    assert rejects["_source"].str.endswith(adult.MALFORMED_FILE).all()
    assert rejects["raw_text"].notna().all() and rejects["error"].notna().all()


def test_rows_carry_deterministic_lineage(settings, runs):
    bronze = table(settings, "bronze", "2024-01-01")
    names = bronze["_source"].str.rsplit("/", n=1).str[-1]
    lines = bronze["_line"]
    expected = [row_id(DATASET, "2024-01-01", n, i) for n, i in zip(names, lines, strict=True)]
    assert bronze["_row_id"].tolist() == expected
    assert bronze["_row_id"].is_unique
    silver = table(settings, "silver", "2024-01-01")
    assert set(silver["_row_id"]) <= set(bronze["_row_id"])


def test_each_commit_carries_the_run_id_the_ledger_records(settings, runs):
    lake = lake_of(settings)
    ledger = read_ledger(lake, DATASET, "2024-01-01")
    for stage, tables in {
        "ingest": ["bronze", "rejects"],
        "validate": ["silver", "quarantine"],
    }.items():
        entry = ledger[ledger["stage"] == stage].iloc[-1]
        for name in tables:
            version = entry["delta_versions"][name]
            assert lake.commit_metadata(name, DATASET, version)[RUN_ID_KEY] == entry["run_id"]
    assert (table(settings, "silver", "2024-01-01")["_run_id"] == entry["run_id"]).all()


def test_the_model_records_the_silver_version_it_was_trained_on(settings, runs):
    store = registry_of(settings)
    card = store.card(DATASET, store.alias(DATASET, "champion"))
    pinned = lake_of(settings).read(
        "silver",
        DATASET,
        where={"ds": card.trained_on["ds"][0]},
        version=card.trained_on["version"],
    )
    assert pinned.num_rows == len(table(settings, "silver", card.trained_on["ds"][0]))
    assert store.load(DATASET, card.version).card.checksum == card.checksum
    assert card.tags["tidewater.silver_version"] == str(card.trained_on["version"])


def test_planted_drift_is_flagged_on_its_day_only(settings, runs):
    assert [runs[ds]["verdict"] for ds in CLEAN_DAYS] == ["ok", "ok"]
    assert runs[DRIFT_DAY]["verdict"] != "ok"
    metrics = lake_of(settings).read("metrics").to_pandas()
    drift = metrics[metrics["metric"].str.startswith("drift")]
    breached = drift[drift["breached"]].groupby("ds")["column"].apply(set)
    assert {"age"} <= breached[DRIFT_DAY]
    assert set(breached.index) == {DRIFT_DAY}
    fs, _ = store_of(settings).filesystem(settings.reports_uri)
    for ds in runs:
        assert fs.exists(runs[ds]["report"])
        assert fs.exists(runs[ds]["report"].replace(".html", ".json"))


def test_running_a_day_again_gives_identical_tables(settings, runs):
    ds = CLEAN_DAYS[0]
    before = {name: content(settings, name, ds) for name in ("bronze", "silver", "predictions")}
    pipeline(DATASET, ds)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(content(settings, name, ds), frame)


def test_a_relanded_day_replaces_its_slice_entirely(settings, runs):
    ds = CLEAN_DAYS[1]
    folder = f"{settings.landing_uri}/{DATASET}/ds={ds}"
    fs, path = store_of(settings).filesystem(folder)
    fs.rm(path, recursive=True)
    fresh = adult.load_adult().iloc[:500]
    land_file(settings, fresh, f"{folder}/relanded.csv")
    run = pipeline(DATASET, ds)
    assert run["landed"] == run["bronze"] == run["silver"] == run["predictions"] == 500
    assert table(settings, "rejects", ds).empty
    assert table(settings, "bronze", ds)["_source"].str.endswith("relanded.csv").all()
    ingest = read_ledger(lake_of(settings), DATASET, ds).query("stage == 'ingest'").iloc[-1]
    assert ingest["details"]["relanded"]["added"] == [f"{folder}/relanded.csv"]
    assert len(ingest["details"]["relanded"]["removed"]) == 2


def test_bad_inputs_each_get_a_reject_or_a_quarantine_row(settings, runs):
    ds = "2024-01-04"
    folder = f"{settings.landing_uri}/{DATASET}/ds={ds}"
    fs, path = store_of(settings).filesystem(folder)
    fs.rm(path, recursive=True)
    rows = adult.load_adult().iloc[1000:1100].reset_index(drop=True)
    write = partial(land_file, settings)
    write(rows.iloc[:20], f"{folder}/good rows with spaces.csv", "csv")
    write(rows.iloc[20:30], f"{folder}/part..1.csv", "csv")
    write(rows.iloc[30:40].drop(columns=["age"]), f"{folder}/missing-column.csv", "csv")
    write(rows.iloc[60:70].drop(columns=["income"]), f"{folder}/labels-apart.csv", "csv")
    write(rows.iloc[40:50].assign(comment="x"), f"{folder}/extra-column.csv", "csv")
    wrong = rows.iloc[50:60].astype(object)
    wrong.loc[50:52, "age"] = "forty"
    write(wrong, f"{folder}/wrong-types.csv", "csv")
    fs.pipe_file(f"{path}/empty.csv", b"")
    fs.pipe_file(f"{path}/_SUCCESS", b"")
    latin = fs.cat_file(f"{path}/good rows with spaces.csv").replace(
        b"United-States", b"Espa\xf1a", 1
    )
    fs.pipe_file(f"{path}/latin1.csv", latin)
    header, body = fs.cat_file(f"{path}/good rows with spaces.csv").split(b"\n", 1)
    gz = gzip.compress(header + b"\n" + body * 50, mtime=0)
    fs.pipe_file(f"{path}/truncated.csv.gz", gz[: len(gz) // 2])

    run = pipeline(DATASET, ds)

    rejects = table(settings, "rejects", ds)
    quarantine = table(settings, "quarantine", ds)
    by_file = lambda frame: frame["_source"].str.rsplit("/", n=1).str[-1].value_counts()  # noqa: E731
    assert by_file(rejects).to_dict() == {"latin1.csv": 1, "truncated.csv.gz": 2}
    truncated = rejects[rejects["_source"].str.endswith("truncated.csv.gz")]
    assert sorted(error.split()[0] for error in truncated["error"]) == ["incomplete", "truncated"]
    assert "not valid UTF-8" in rejects.set_index("_line").loc[rejects["_line"].min(), "error"]
    assert by_file(quarantine).to_dict() == {"missing-column.csv": 10, "wrong-types.csv": 3}
    silver = by_file(table(settings, "silver", ds)).to_dict()
    assert silver["good rows with spaces.csv"] == 20 and silver["part..1.csv"] == 10
    assert silver["extra-column.csv"] == 10 and silver["latin1.csv"] == 19
    assert silver["labels-apart.csv"] == 10  # features land before their labels
    extra = table(settings, "bronze", ds).dropna(subset=["_extra"])
    assert len(extra) == 10 and extra["_extra"].str.contains('"comment"').all()
    ingest = read_ledger(lake_of(settings), DATASET, ds).query("stage == 'ingest'").iloc[-1]
    assert ingest["details"]["markers_skipped"] == ["_SUCCESS"]
    assert run["landed"] == run["bronze"] + run["rejects"]


def test_too_many_quarantined_rows_fail_the_day_loudly_and_keep_every_row(settings, runs):
    ds = "2024-01-05"
    strict = settings.model_copy(update={"max_quarantine_fraction": 0.001})
    quarantined = r"12 of 6,?125 rows quarantined \(0.2% > limit 0.1%\)"
    with pytest.raises(Exception, match=quarantined), use_settings(strict):
        pipeline(DATASET, ds)
    ledger = read_ledger(lake_of(settings), DATASET, ds)
    validate = ledger[ledger["stage"] == "validate"].iloc[-1]
    assert validate["status"] == "failed" and "QuarantineLimitExceeded" in validate["error"]
    assert ledger[ledger["stage"] == "pipeline"].iloc[-1]["status"] == "failed"
    assert "score" not in set(ledger["stage"])
    assert len(table(settings, "quarantine", ds)) == adult.WRONG_TYPE_BAD_ROWS
    assert len(table(settings, "silver", ds)) + adult.WRONG_TYPE_BAD_ROWS == 6125


def test_a_repair_reruns_the_failed_stage_and_its_dependents_reusing_what_succeeded(settings, runs):
    ds = "2024-01-03"
    wrong = adult.load_adult().iloc[:1].astype(object).assign(age="forty")
    land_file(settings, wrong, f"{settings.landing_uri}/{DATASET}/ds={ds}/bad.csv")
    with (
        pytest.raises(Exception, match="quarantined"),
        use_settings(settings.model_copy(update={"max_quarantine_fraction": 0.0})),
    ):
        pipeline(DATASET, ds)
    with pytest.raises(StageNotDone, match=f"validate of adult ds={ds} last failed"):
        pipeline(DATASET, ds, stages=["score"])  # scoring would read a day that failed
    run = pipeline(DATASET, ds, stages=["validate"])
    ledger = read_ledger(lake_of(settings), DATASET, ds)
    assert ledger["stage"].value_counts()["ingest"] == 1  # reused, not rerun
    assert list(ledger[ledger["status"] == "succeeded"]["stage"])[-4:] == [
        "validate",
        "score",
        "monitor",
        "pipeline",
    ]
    assert ledger.iloc[-1]["details"]["stages"] == ["validate", "score", "monitor"]
    assert run["landed"] == run["bronze"] + run["rejects"]
    assert run["silver"] == run["predictions"] == len(table(settings, "silver", ds))


def test_a_day_of_empty_files_is_accounted_as_zero_rows(settings, runs):
    ds = "2024-01-07"
    folder = f"{settings.landing_uri}/{DATASET}/ds={ds}"
    fs, path = store_of(settings).filesystem(folder)
    fs.rm(path, recursive=True)
    fs.makedirs(path)
    fs.pipe_file(f"{path}/empty.csv", b"")
    run = pipeline(DATASET, ds)
    assert run["landed"] == run["bronze"] == run["silver"] == run["predictions"] == 0
    assert run["verdict"] == "no-data"


def test_the_same_file_landed_twice_is_ingested_once_and_the_copy_recorded(settings, runs):
    ds = "2024-02-01"
    folder = f"{settings.landing_uri}/{DATASET}/ds={ds}"
    fresh = land_file(settings, adult.load_adult().iloc[1000:1200], f"{folder}/a.csv")
    fs, _ = store_of(settings).filesystem(folder)
    fs.copy(fresh, f"{folder}/b.csv")  # the same bytes under a second name
    earlier = f"{settings.landing_uri}/{DATASET}/ds={CLEAN_DAYS[0]}/part-0000.csv"
    fs.copy(earlier, f"{folder}/c.csv")  # a file another day ingested
    run = pipeline(DATASET, ds)
    assert run["landed"] == run["bronze"] == run["silver"] == 200
    assert table(settings, "silver", ds)["_source"].str.endswith("/a.csv").all()
    ingest = read_ledger(lake_of(settings), DATASET, ds).query("stage == 'ingest'").iloc[-1]
    same_as = {f["path"].rsplit("/", 1)[-1]: f.get("same_as") for f in ingest["files"]}
    assert same_as["a.csv"] is None and same_as["b.csv"].endswith("/a.csv")
    assert same_as["c.csv"].startswith(f"ds={CLEAN_DAYS[0]} ")
