"""UCI Adult (Census Income, 1994): predict whether income exceeds 50K a year.

The shipped data (`datasets/data/adult.csv.gz`, both original splits, 48,842 rows) and its
citation (`datasets/data/ADULT-CITATION.md`, CC BY 4.0) travel with the repository.

Landing (`land`): the 48,842 rows are shuffled (seeded) and split into `days` near-equal daily
partitions `{landing_uri}/adult/ds=YYYY-MM-DD/`, one data file a day, every value a string as in
the raw files and missing values written `?`. The data file is `part-0000.csv`, except, when
`days >= 4`, day 1 `part-0000.csv.gz`, day 2 `part-0000.parquet`, day 3 `part-0000.jsonl`.
Days from `drift_from` on carry planted drift (`apply_drift` at strength 1). `landing_plan` says
which files and rows each day gets.

Bad files (`bad_files=True`), always CSV with the header row; the malformed file lands on day
index 1 and the wrong-types file on day index 4 (with fewer than 5 days: the last two days):

`part-9001-malformed.csv`: header + 25 data lines (file lines 2-26). `MALFORMED_BAD_LINES` = 10
of them do not split into exactly 15 comma-separated fields; the other 15 are valid rows.
    line 3:  14 fields (income dropped)
    line 5:  16 fields (a trailing extra value)
    line 7:  binary garbage `\\x00\\x01\\x02\\x03\\x7f` (1 field)
    line 9:  a stray line of prose (1 field)
    line 11: a semicolon-separated row (1 field)
    line 13: a tab-separated row (1 field)
    line 15: 13 fields
    line 17: two rows glued on one line (30 fields)
    line 19: `,,,,` (5 empty fields)
    line 26: the last line, an unterminated quote after the first field (2 fields, quote runs
             to end of file)
Readers differ on such lines: pyarrow's CSV reader with an `invalid_row_handler` and Python's
`csv` module see exactly these 10; pandas pads short rows (and its C engine rejects the whole
file on the unterminated quote).

`part-9002-wrong-types.csv`: header + 20 rows, all with 15 fields. `WRONG_TYPE_BAD_ROWS` = 12
rows each carry one value failing `AdultSchema` (data row numbers, 1-based; file line = n + 1):
    1: age `forty`            2: hours_per_week `abc`     4: age `150` (> 90)
    5: sex `Unknown`          7: workclass `12`           8: education_num `0` (< 1, and
                                                              so also the consistency check)
    10: capital_gain `-5`     11: income `maybe`          13: race empty (not nullable)
    14: fnlwgt `0` (not > 0)  16: age empty (not nullable)
    17: education `Doctorate` with a different education_num (education consistency check)
Rows 3, 6, 9, 12, 15, 18, 19, 20 (`WRONG_TYPE_GOOD_ROWS` = 8) are valid.
"""

from __future__ import annotations

import functools
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from datasets import landing_writer as lw
from datasets.base import (
    Dataset,
    DatasetModel,
    FeatureRoles,
    LandingFormat,
    daily_partitions,
    record_line,
    row_id,
)

NAME = "adult"
DATA_FILE = Path(__file__).parent / "data" / "adult.csv.gz"

COLUMNS: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
)
INT_COLUMNS = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
MISSING_VALUES = ("", "?")
NULLABLE = ("workclass", "occupation", "native_country", "income")

EDUCATION_NUM = {
    "Preschool": 1,
    "1st-4th": 2,
    "5th-6th": 3,
    "7th-8th": 4,
    "9th": 5,
    "10th": 6,
    "11th": 7,
    "12th": 8,
    "HS-grad": 9,
    "Some-college": 10,
    "Assoc-voc": 11,
    "Assoc-acdm": 12,
    "Bachelors": 13,
    "Masters": 14,
    "Prof-school": 15,
    "Doctorate": 16,
}
WORKCLASS = (
    "Federal-gov", "Local-gov", "Never-worked", "Private", "Self-emp-inc", "Self-emp-not-inc",
    "State-gov", "Without-pay",
)  # fmt: skip
MARITAL_STATUS = (
    "Divorced", "Married-AF-spouse", "Married-civ-spouse", "Married-spouse-absent",
    "Never-married", "Separated", "Widowed",
)  # fmt: skip
OCCUPATION = (
    "Adm-clerical", "Armed-Forces", "Craft-repair", "Exec-managerial", "Farming-fishing",
    "Handlers-cleaners", "Machine-op-inspct", "Other-service", "Priv-house-serv",
    "Prof-specialty", "Protective-serv", "Sales", "Tech-support", "Transport-moving",
)  # fmt: skip
RELATIONSHIP = ("Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife")
RACE = ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White")
SEX = ("Female", "Male")
NATIVE_COUNTRY = (
    "Cambodia", "Canada", "China", "Columbia", "Cuba", "Dominican-Republic", "Ecuador",
    "El-Salvador", "England", "France", "Germany", "Greece", "Guatemala", "Haiti",
    "Holand-Netherlands", "Honduras", "Hong", "Hungary", "India", "Iran", "Ireland", "Italy",
    "Jamaica", "Japan", "Laos", "Mexico", "Nicaragua", "Outlying-US(Guam-USVI-etc)", "Peru",
    "Philippines", "Poland", "Portugal", "Puerto-Rico", "Scotland", "South", "Taiwan",
    "Thailand", "Trinadad&Tobago", "United-States", "Vietnam", "Yugoslavia",
)  # fmt: skip
INCOME = ("<=50K", ">50K")
AGE_BANDS = ("17-25", "26-35", "36-45", "46-60", "61+")

CITATION = (
    "Becker, B. & Kohavi, R. (1996). Adult [Dataset]. UCI Machine Learning Repository. "
    "https://doi.org/10.24432/C5XW20 (CC BY 4.0)"
)


class AdultSchema(DatasetModel):
    """A silver Adult row: typed, in range, known categories, nulls only where allowed."""

    age: Series[pd.Int64Dtype] = pa.Field(ge=17, le=90)
    workclass: Series[str] = pa.Field(isin=WORKCLASS, nullable=True)
    fnlwgt: Series[pd.Int64Dtype] = pa.Field(gt=0)
    education: Series[str] = pa.Field(isin=tuple(EDUCATION_NUM))
    education_num: Series[pd.Int64Dtype] = pa.Field(ge=1, le=16)
    marital_status: Series[str] = pa.Field(isin=MARITAL_STATUS)
    occupation: Series[str] = pa.Field(isin=OCCUPATION, nullable=True)
    relationship: Series[str] = pa.Field(isin=RELATIONSHIP)
    race: Series[str] = pa.Field(isin=RACE)
    sex: Series[str] = pa.Field(isin=SEX)
    capital_gain: Series[pd.Int64Dtype] = pa.Field(ge=0, le=99999)
    capital_loss: Series[pd.Int64Dtype] = pa.Field(ge=0, le=4356)
    hours_per_week: Series[pd.Int64Dtype] = pa.Field(ge=1, le=99)
    native_country: Series[str] = pa.Field(isin=NATIVE_COUNTRY, nullable=True)
    income: Series[str] = pa.Field(isin=INCOME, nullable=True)

    @pa.dataframe_check
    def education_num_matches_education(cls, df: pd.DataFrame) -> Series[bool]:
        """education_num is the rank of education (rows with either unknown are left to the
        column checks)."""
        expected = df["education"].map(EDUCATION_NUM).astype("Float64")
        same = pd.to_numeric(df["education_num"], errors="coerce").astype("Float64") == expected
        return same.fillna(True).astype(bool)


ROLES = FeatureRoles(
    numeric=INT_COLUMNS,
    categorical=(
        "workclass",
        "education",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "native_country",
    ),
    target="income",
    positive_label=">50K",
    protected=("sex", "race", "age_band"),
)


def derive_protected(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with `age_band`, a categorical of `AGE_BANDS` (missing where age is)."""
    age = pd.to_numeric(df["age"], errors="coerce").astype("float64")
    out = df.copy()
    out["age_band"] = pd.cut(age, bins=[-np.inf, 25, 35, 45, 60, np.inf], labels=list(AGE_BANDS))
    return out


def _typed(raw: pd.DataFrame) -> pd.DataFrame:
    """String columns as landed -> silver typing: Int64 ints, str with missing tokens -> None."""
    out = {}
    for column in COLUMNS:
        values = raw[column]
        if column in INT_COLUMNS:
            out[column] = pd.to_numeric(values).astype("Int64")
        else:
            out[column] = values.astype(object).where(~values.isin(MISSING_VALUES), None)
    return pd.DataFrame(out)


@functools.cache
def _shipped_raw() -> pd.DataFrame:
    return pd.read_csv(DATA_FILE, dtype=str, keep_default_na=False)


@functools.cache
def _shipped_typed() -> pd.DataFrame:
    return _typed(_shipped_raw())


def load_adult() -> pd.DataFrame:
    """The shipped Adult data (48,842 rows), typed as silver."""
    return _shipped_typed().copy()


def apply_drift(df: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
    """`df` moved towards an older, richer population with more missing values.

    Strength 0 is the identity; at strength 1 the age, income share and missingness shift is
    plainly detectable: age mean about +8 years (normalised Wasserstein distance about 0.6),
    share of >50K from 0.24 to about 0.42, workclass missing in about 20% of rows instead of 6%.
    Drifted rows stay valid.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"drift strength must be in [0, 1], got {strength}")
    if strength == 0.0:
        return df.copy()
    age = pd.to_numeric(df["age"]).to_numpy(dtype=float, na_value=38.0)
    rich = df["income"].eq(">50K").fillna(False).to_numpy(dtype=bool)
    weights = np.exp(strength * 0.3 * (age - 38.0) / 13.0) * (1.0 + strength * rich)
    out = lw.weighted_resample(df, weights, rng)
    out["age"] = (out["age"] + round(3 * strength)).clip(17, 90)
    out["hours_per_week"] = (out["hours_per_week"] + round(3 * strength)).clip(1, 99)
    gain = (out["capital_gain"] * (1.0 + 0.5 * strength)).round()
    out["capital_gain"] = gain.clip(0, 99999).astype("Int64")
    return lw.blank_out(out, ("workclass", "occupation", "native_country"), 0.15 * strength, rng)


def synthesize(n_rows: int, drift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """`n_rows` Adult-like rows typed as silver (bootstrapped real rows, numerics jittered
    within their valid ranges), with planted drift of strength `drift`."""
    rng = np.random.default_rng(seed)
    base = _shipped_typed()
    picks = rng.integers(0, len(base), size=n_rows)
    df = base.iloc[picks].reset_index(drop=True)

    def ints(column: str) -> np.ndarray:
        return df[column].to_numpy(dtype=np.int64)

    def scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
        return np.rint(values * rng.uniform(low, high, size=n_rows)).astype(np.int64)

    age = ints("age") + rng.integers(-1, 2, size=n_rows)
    hours = ints("hours_per_week") + rng.integers(-2, 3, size=n_rows) * (rng.random(n_rows) < 0.3)
    df["age"] = pd.array(np.clip(age, 17, 90), dtype="Int64")
    df["fnlwgt"] = pd.array(np.maximum(scaled(ints("fnlwgt"), 0.9, 1.1), 1), dtype="Int64")
    df["hours_per_week"] = pd.array(np.clip(hours, 1, 99), dtype="Int64")
    gain = np.clip(scaled(ints("capital_gain"), 0.95, 1.05), 0, 99999)
    df["capital_gain"] = pd.array(gain, dtype="Int64")
    loss = np.clip(scaled(ints("capital_loss"), 0.95, 1.05), 0, 4356)
    df["capital_loss"] = pd.array(loss, dtype="Int64")
    return apply_drift(df, drift, rng)


def _shipped_lines(first: int, count: int) -> list[str]:
    return (
        lw.to_landing_strings(_shipped_raw().iloc[first : first + count])
        .apply(",".join, axis=1)
        .tolist()
    )


MALFORMED_FILE = "part-9001-malformed.csv"
MALFORMED_GOOD_ROWS = 15
MALFORMED_BAD_LINES = 10
WRONG_TYPES_FILE = "part-9002-wrong-types.csv"
WRONG_TYPE_GOOD_ROWS = 8
WRONG_TYPE_BAD_ROWS = 12
_WRONG_TYPE_DEFECTS: tuple[tuple[str, str] | None, ...] = (
    ("age", "forty"),
    ("hours_per_week", "abc"),
    None,
    ("age", "150"),
    ("sex", "Unknown"),
    None,
    ("workclass", "12"),
    ("education_num", "0"),
    None,
    ("capital_gain", "-5"),
    ("income", "maybe"),
    None,
    ("race", ""),
    ("fnlwgt", "0"),
    None,
    ("age", ""),
    ("education", "Doctorate"),
    None,
    None,
    None,
)


def _malformed_file() -> lw.BadFile:
    good = _shipped_lines(0, MALFORMED_GOOD_ROWS)
    row = _shipped_lines(MALFORMED_GOOD_ROWS, 1)[0]
    fields = row.split(",")
    broken = [
        ",".join(fields[:14]),
        row + ",extra",
        "\x00\x01\x02\x03\x7f",
        "a stray line of text from the exporting system",
        row.replace(",", ";"),
        row.replace(",", "\t"),
        ",".join(fields[:13]),
        row + "," + row,
        ",,,,",
    ]
    lines = [line for pair in zip(good, broken, strict=False) for line in pair]
    lines += good[len(broken) :]
    lines.append(f'{fields[0]},"' + ",".join(fields[1:]))
    text = "\n".join([",".join(COLUMNS), *lines]) + "\n"
    return lw.BadFile(MALFORMED_FILE, text, len(lines), MALFORMED_BAD_LINES)


def _wrong_types_file() -> lw.BadFile:
    rows = lw.to_landing_strings(_shipped_raw().iloc[100 : 100 + len(_WRONG_TYPE_DEFECTS)])
    rows = rows.reset_index(drop=True)
    for i, defect in enumerate(_WRONG_TYPE_DEFECTS):
        if defect is not None:
            rows.loc[i, defect[0]] = defect[1]
    text = rows.to_csv(index=False, lineterminator="\n")
    return lw.BadFile(WRONG_TYPES_FILE, text, len(rows), WRONG_TYPE_BAD_ROWS)


@functools.cache
def _bad_files() -> tuple[lw.BadFile, ...]:
    return _malformed_file(), _wrong_types_file()


def landing_plan(
    start: date, days: int, drift_from: date | None = None, bad_files: bool = True
) -> list[lw.LandingFile]:
    """The files `land` writes with these arguments, in order, with their row counts."""
    bad = _bad_files() if bad_files else ()
    return lw.plan_landing(len(_shipped_raw()), start, days, drift_from, bad)


def write_landing_file(
    df: pd.DataFrame, uri: str, fmt: str, storage_options: dict[str, Any] | None = None
) -> str:
    """Writes `df` as one landed Adult file (strings, missing as `?`) at `uri`; returns `uri`."""
    return lw.write_landing_file(df, uri, fmt, storage_options, na_rep="?")


def land(
    landing_uri: str,
    start: date,
    days: int,
    drift_from: date | None = None,
    bad_files: bool = True,
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
    labels_delay_days: int | None = None,
) -> list[str]:
    """Writes `days` daily partitions of the real data from `start` under
    `{landing_uri}/adult/`, replacing those partitions; returns the URIs written.

    With `labels_delay_days`, the data files land without `income`, and each day's labels
    land that many days later on the labels feed (`{landing_uri}/adult-labels/`), as
    `_row_id,income` rows naming the records they label."""
    plan = landing_plan(start, days, drift_from, bad_files)
    bad = {f.filename: f for f in _bad_files()}
    data = _shipped_typed()
    chunks = lw.day_chunks(len(data), days, np.random.default_rng(seed))
    day_of = {ds: i for i, ds in enumerate(daily_partitions(start, days))}
    labels_feed = f"{NAME}-labels"
    for ds in day_of:
        lw.clear_partition(lw.partition_uri(landing_uri, NAME, ds), storage_options)
        if labels_delay_days is not None:
            later = ds + timedelta(days=labels_delay_days)
            lw.clear_partition(lw.partition_uri(landing_uri, labels_feed, later), storage_options)
    written = []
    for item in plan:
        uri = f"{lw.partition_uri(landing_uri, NAME, item.ds)}/{item.filename}"
        if item.filename in bad:
            lw.write_bytes(uri, bad[item.filename].text.encode(), storage_options)
        else:
            day = day_of[item.ds]
            rows = data.iloc[chunks[day]].reset_index(drop=True)
            if item.is_drift:
                rows = apply_drift(rows, 1.0, np.random.default_rng([seed, day]))
            if labels_delay_days is not None:
                written.append(
                    _land_labels(rows, item, landing_uri, labels_delay_days, storage_options)
                )
                rows = rows.assign(income=None)
            write_landing_file(rows, uri, item.fmt, storage_options)
        written.append(uri)
    return written


def _land_labels(
    rows: pd.DataFrame,
    item: lw.LandingFile,
    landing_uri: str,
    delay_days: int,
    storage_options: dict[str, Any] | None,
) -> str:
    """The labels of one data file, on the labels feed `delay_days` after it landed."""
    kind = item.fmt.removesuffix(".gz")
    labels = pd.DataFrame(
        {
            "_row_id": [
                row_id(NAME, item.ds.isoformat(), item.filename, record_line(kind, index))
                for index in range(len(rows))
            ],
            "income": rows["income"],
        }
    )
    later = item.ds + timedelta(days=delay_days)
    uri = f"{lw.partition_uri(landing_uri, f'{NAME}-labels', later)}/labels-{item.ds}.csv"
    return lw.write_landing_file(labels, uri, "csv", storage_options)


DATASET = Dataset(
    name=NAME,
    columns=COLUMNS,
    schema=AdultSchema,
    roles=ROLES,
    landing=LandingFormat(null_tokens=MISSING_VALUES),
    land=land,
    synthesize=synthesize,
    derive_protected=derive_protected,
    citation=CITATION,
)
