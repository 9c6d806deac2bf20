"""The Adult dataset module: shipped data, schema, landing partitions, drift, synthesis."""

from __future__ import annotations

import csv
import gzip
import io
import time
from datetime import date
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.csv as pacsv
import pytest

from datasets import adult, get_dataset
from datasets import landing_writer as lw

START = date(2024, 3, 1)
DAYS = 7
DRIFT_FROM = date(2024, 3, 6)


def typed_like_pipeline(raw: pd.DataFrame) -> pd.DataFrame:
    """What the pipeline does before pandera: strip, missing tokens -> null, ints -> Int64."""
    out = raw.astype(object).apply(lambda s: s.str.strip())
    out = out.mask(out.isin(adult.DATASET.landing.null_tokens), None)
    for column in adult.INT_COLUMNS:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
    return out


def failing_rows(df: pd.DataFrame) -> dict[str, set]:
    """Failing row indices of a lazy validation, by check name."""
    with pytest.raises(pa.errors.SchemaErrors) as info:
        adult.AdultSchema.validate(df, lazy=True)
    cases = info.value.failure_cases
    assert cases["index"].notna().all(), cases
    return {check: set(group["index"]) for check, group in cases.groupby("check")}


def read_landed(uri: str, fmt: str) -> pd.DataFrame:
    with fsspec.open(uri, "rb") as f:
        data = f.read()
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data))
    if fmt == "jsonl":
        return pd.read_json(io.BytesIO(data), lines=True, dtype=False, convert_dates=False)
    if fmt == "csv.gz":
        data = gzip.decompress(data)
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("landing")
    return root, adult.land(str(root), START, DAYS, drift_from=DRIFT_FROM, seed=3)


def test_shipped_data_loads_typed_and_valid() -> None:
    df = adult.load_adult()
    assert len(df) == 48_842
    assert tuple(df.columns) == adult.COLUMNS
    assert all(str(df[c].dtype) == "Int64" for c in adult.INT_COLUMNS)
    assert df[["workclass", "occupation", "native_country"]].isna().sum().tolist() == [
        2799,
        2809,
        857,
    ]
    assert not df.isin(["?"]).any().any()
    adult.AdultSchema.validate(df, lazy=True)

    citation = (adult.DATA_FILE.parent / "ADULT-CITATION.md").read_text()
    assert "10.24432/C5XW20" in citation and "CC BY 4.0" in citation
    assert get_dataset("adult") is adult.DATASET
    assert adult.DATASET.landing.null_tokens == ("", "?")
    assert adult.DATASET.roles.features == adult.INT_COLUMNS + adult.ROLES.categorical


def test_schema_reports_each_failing_row() -> None:
    df = adult.load_adult().head(12)
    df.index = df.index + 100
    df.loc[100, "age"] = 150
    df.loc[101, "capital_loss"] = 5000
    df.loc[102, "sex"] = "Unknown"
    df.loc[103, "native_country"] = "Atlantis"
    df.loc[104, "race"] = None
    df.loc[105, "hours_per_week"] = pd.NA
    df.loc[106, "workclass"] = None
    df.loc[107, "income"] = None
    df.loc[108, "education"] = "Doctorate"
    df.loc[109, "fnlwgt"] = 0

    failures = failing_rows(df)

    assert failures["less_than_or_equal_to(90)"] == {100}
    assert failures["less_than_or_equal_to(4356)"] == {101}
    assert failures["greater_than(0)"] == {109}
    assert {100 + i for i in (2, 3)} <= set().union(
        *(rows for check, rows in failures.items() if check.startswith("isin"))
    )
    assert failures["not_nullable"] == {104, 105}
    assert failures["education_num_matches_education"] == {108}
    assert all(106 not in rows and 107 not in rows for rows in failures.values())


def test_derive_protected_bands_age_null_safe() -> None:
    df = pd.DataFrame({"age": pd.array([17, 25, 26, 45, 60, 61, 90, None], dtype="Int64")})
    out = adult.derive_protected(df)
    assert "age_band" not in df
    assert list(out["age_band"].cat.categories) == list(adult.AGE_BANDS)
    bands = ["17-25", "17-25", "26-35", "36-45", "46-60", "61+", "61+"]
    assert out["age_band"].tolist()[:-1] == bands
    assert pd.isna(out["age_band"].iloc[-1])


def test_land_writes_the_plan(landed: tuple[Path, list[str]]) -> None:
    root, uris = landed
    plan = adult.landing_plan(START, DAYS, DRIFT_FROM)
    assert uris == [f"{root}/adult/ds={f.ds.isoformat()}/{f.filename}" for f in plan]
    assert sorted(str(p) for p in root.rglob("*") if p.is_file()) == sorted(uris)
    assert {f.fmt for f in plan} == set(lw.FORMATS)
    assert [f.is_drift for f in plan if f.n_bad == 0] == [False] * 5 + [True] * 2

    total = 0
    for f, uri in zip(plan, uris, strict=True):
        if f.n_bad:
            continue
        df = read_landed(uri, f.fmt)
        assert tuple(df.columns) == adult.COLUMNS
        assert len(df) == f.n_rows
        assert df.map(lambda v: isinstance(v, str)).all().all()
        assert (df["workclass"] == "?").any()
        adult.AdultSchema.validate(typed_like_pipeline(df), lazy=True)
        total += len(df)
    assert total == 48_842
    assert sum(f.n_rows for f in plan) == 48_842 + 25 + 20


def test_land_is_deterministic_and_replaces_partitions(tmp_path: Path) -> None:
    def snapshot() -> dict[str, bytes]:
        return {
            str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
        }

    adult.land(str(tmp_path), START, 5, drift_from=date(2024, 3, 5))
    first = snapshot()
    stale = tmp_path / "adult" / "ds=2024-03-02" / "part-0001.csv"
    stale.write_text("old\n")
    adult.land(str(tmp_path), START, 5, drift_from=date(2024, 3, 5))
    assert snapshot() == first

    uris = adult.land("memory://adult-determinism/landing", START, 5, drift_from=date(2024, 3, 5))
    fs = fsspec.filesystem("memory")
    assert len(uris) == len(first)
    for uri in uris:
        rel = uri.split("/landing/", 1)[1]
        assert fs.cat_file(uri) == first[rel]


def test_bad_files_have_the_documented_bad_lines(landed: tuple[Path, list[str]]) -> None:
    _, uris = landed
    by_name = {uri.rsplit("/", 1)[1]: uri for uri in uris}
    malformed = Path(by_name[adult.MALFORMED_FILE])
    assert malformed.parent.name == "ds=2024-03-02"
    lines = malformed.read_text().splitlines()
    assert len(lines) == 1 + adult.MALFORMED_GOOD_ROWS + adult.MALFORMED_BAD_LINES
    widths = [len(r) for r in csv.reader(io.StringIO(malformed.read_text()))]
    bad_lines = [n for n, width in enumerate(widths, start=1) if width != 15]
    assert bad_lines == [3, 5, 7, 9, 11, 13, 15, 17, 19, 26]

    rejected = []
    table = pacsv.read_csv(
        malformed,
        convert_options=pacsv.ConvertOptions(
            column_types={c: pyarrow.string() for c in adult.COLUMNS}
        ),
        parse_options=pacsv.ParseOptions(
            invalid_row_handler=lambda row: rejected.append(row) or "skip"
        ),
    )
    assert (table.num_rows, len(rejected)) == (adult.MALFORMED_GOOD_ROWS, adult.MALFORMED_BAD_LINES)
    adult.AdultSchema.validate(typed_like_pipeline(table.to_pandas()), lazy=True)

    wrong = Path(by_name[adult.WRONG_TYPES_FILE])
    assert wrong.parent.name == "ds=2024-03-05"
    raw = pd.read_csv(wrong, dtype=str, keep_default_na=False)
    assert len(raw) == adult.WRONG_TYPE_GOOD_ROWS + adult.WRONG_TYPE_BAD_ROWS
    failures = failing_rows(typed_like_pipeline(raw))
    bad_rows = set().union(*failures.values())
    assert len(bad_rows) == adult.WRONG_TYPE_BAD_ROWS
    assert bad_rows == {0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16}


@pytest.mark.parametrize(("days", "bad_days"), [(1, (0, 0)), (3, (1, 2)), (5, (1, 4))])
def test_plan_for_short_runs(days: int, bad_days: tuple[int, int]) -> None:
    plan = adult.landing_plan(START, days, None, bad_files=True)
    bad = [f for f in plan if f.n_bad]
    assert [(f.ds - START).days for f in bad] == list(bad_days)
    assert sum(f.n_rows for f in plan if not f.n_bad) == 48_842
    assert not any(f.is_drift for f in plan)
    assert len(adult.landing_plan(START, days, None, bad_files=False)) == days


def drift_stats(df: pd.DataFrame) -> tuple[float, float, float]:
    age = pd.to_numeric(df["age"])
    missing = df[["workclass", "occupation", "native_country"]].isin(["?"]).to_numpy().mean()
    if not missing:
        missing = df[["workclass", "occupation", "native_country"]].isna().to_numpy().mean()
    return float(age.mean()), float((df["income"] == ">50K").mean()), float(missing)


def normalised_wasserstein(a: pd.Series, b: pd.Series) -> float:
    qs = np.linspace(0.005, 0.995, 199)
    x, y = pd.to_numeric(a).astype(float), pd.to_numeric(b).astype(float)
    return float(np.abs(x.quantile(qs).to_numpy() - y.quantile(qs).to_numpy()).mean() / x.std())


def test_planted_drift_days_differ_from_clean_days(landed: tuple[Path, list[str]]) -> None:
    _, uris = landed
    plan = adult.landing_plan(START, DAYS, DRIFT_FROM)
    days = {f.ds: read_landed(uri, f.fmt) for f, uri in zip(plan, uris, strict=True) if not f.n_bad}
    clean = [days[d] for d in sorted(days) if d < DRIFT_FROM]
    drifted = [days[d] for d in sorted(days) if d >= DRIFT_FROM]
    for a in clean[1:]:
        assert normalised_wasserstein(clean[0]["age"], a["age"]) < 0.05
        assert abs(drift_stats(a)[1] - drift_stats(clean[0])[1]) < 0.03
    for d in drifted:
        assert normalised_wasserstein(clean[0]["age"], d["age"]) > 0.3
        age0, rich0, miss0 = drift_stats(clean[0])
        age1, rich1, miss1 = drift_stats(d)
        assert age1 > age0 + 5 and rich1 > rich0 + 0.1 and miss1 > miss0 + 0.1


def test_apply_drift_identity_at_zero_and_valid_at_one() -> None:
    df = adult.load_adult().sample(5000, random_state=0)
    pd.testing.assert_frame_equal(adult.apply_drift(df, 0.0, np.random.default_rng(0)), df)
    drifted = adult.apply_drift(df, 1.0, np.random.default_rng(0))
    assert len(drifted) == len(df)
    adult.AdultSchema.validate(drifted, lazy=True)
    with pytest.raises(ValueError):
        adult.apply_drift(df, 1.5, np.random.default_rng(0))


def test_synthesize_is_typed_valid_and_drifts() -> None:
    clean = adult.synthesize(40_000, drift=0.0, seed=1)
    drifted = adult.synthesize(40_000, drift=1.0, seed=1)
    real = adult.load_adult()
    assert list(clean.dtypes) == list(real.dtypes)
    pd.testing.assert_frame_equal(clean, adult.synthesize(40_000, drift=0.0, seed=1))
    adult.AdultSchema.validate(clean, lazy=True)
    adult.AdultSchema.validate(drifted, lazy=True)
    assert normalised_wasserstein(real["age"], clean["age"]) < 0.05
    assert normalised_wasserstein(clean["age"], drifted["age"]) > 0.3
    (age0, rich0, miss0), (age1, rich1, miss1) = drift_stats(clean), drift_stats(drifted)
    assert age1 > age0 + 5 and rich1 > rich0 + 0.1 and miss1 > miss0 + 0.1


def test_synthesize_a_million_rows_quickly() -> None:
    started = time.perf_counter()
    df = adult.synthesize(1_000_000, drift=1.0, seed=7)
    assert time.perf_counter() - started < 10
    assert len(df) == 1_000_000 and tuple(df.columns) == adult.COLUMNS
    adult.AdultSchema.validate(df.sample(50_000, random_state=0), lazy=True)


@pytest.mark.parametrize("fmt", lw.FORMATS)
def test_write_landing_file_round_trips_every_format(fmt: str) -> None:
    df = adult.load_adult().head(50)
    uri = f"memory://write-landing-file/part.{fmt}"
    assert adult.write_landing_file(df, uri, fmt) == uri
    first = fsspec.filesystem("memory").cat_file(uri)
    adult.write_landing_file(df, uri, fmt)
    assert fsspec.filesystem("memory").cat_file(uri) == first
    back = read_landed(uri, fmt)
    assert tuple(back.columns) == adult.COLUMNS
    pd.testing.assert_frame_equal(typed_like_pipeline(back), df.reset_index(drop=True))
