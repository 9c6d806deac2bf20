"""Validation splits rows: typed valid rows to silver, failing rows with every failed check."""

from __future__ import annotations

import pandas as pd
import pytest

from datasets import adult, get_dataset
from tasks.validation import QuarantineLimitExceeded, check_quarantine_limit, split_valid_rows

ADULT = get_dataset("adult")
GOOD = {
    "age": "39", "workclass": "State-gov", "fnlwgt": "77516", "education": "Bachelors",
    "education_num": "13", "marital_status": "Never-married", "occupation": "Adm-clerical",
    "relationship": "Not-in-family", "race": "White", "sex": "Male", "capital_gain": "2174",
    "capital_loss": "0", "hours_per_week": "40", "native_country": "United-States",
    "income": "<=50K",
}  # fmt: skip


def bronze(*changes: dict, issues: list[str | None] | None = None) -> pd.DataFrame:
    rows = [GOOD | change for change in changes]
    frame = pd.DataFrame(rows, dtype="string")
    frame["_row_id"] = [f"r{i}" for i in range(len(rows))]
    frame["_source"] = "file.csv"
    frame["_line"] = range(2, len(rows) + 2)
    frame["_ingested_at"] = pd.Timestamp("2024-01-01", tz="UTC")
    frame["_issues"] = issues or [None] * len(rows)
    frame["ds"] = "2024-01-01"
    return frame


def checks_of(split, row_id: str) -> list[str]:
    row = split.quarantine.set_index("_row_id").loc[row_id]
    return list(row["_failed_checks"])


def test_valid_rows_are_typed_and_missing_tokens_become_null():
    split = split_valid_rows.fn(bronze({}, {"workclass": "?", "age": " 40 "}), ADULT)
    assert len(split.silver) == 2 and split.quarantine.empty
    assert split.silver["age"].tolist() == [39, 40]
    assert str(split.silver["age"].dtype) == "Int64"
    assert pd.isna(split.silver.loc[1, "workclass"])


def test_each_bad_value_is_quarantined_with_its_check():
    split = split_valid_rows.fn(
        bronze(
            {"age": "forty"},
            {"age": "150"},
            {"sex": "Unknown"},
            {"race": "?"},
            {"hours_per_week": "40.5"},
            {},
        ),
        ADULT,
    )
    assert split.silver["_row_id"].tolist() == ["r5"]
    assert "age: not a valid integer" in checks_of(split, "r0")
    assert any(check.startswith("age: less_than_or_equal_to") for check in checks_of(split, "r1"))
    assert any(check.startswith("sex: isin") for check in checks_of(split, "r2"))
    assert "race: not_nullable" in checks_of(split, "r3")
    assert "hours_per_week: not a valid integer" in checks_of(split, "r4")
    assert split.quarantine.loc[0, "age"] == "forty", "quarantine keeps the value as landed"


def test_rows_of_a_file_missing_a_column_are_quarantined():
    split = split_valid_rows.fn(bronze({}, issues=["missing column income"]), ADULT)
    assert split.silver.empty
    assert "file: missing column income" in checks_of(split, "r0")


def test_the_shipped_wrong_types_file_quarantines_its_bad_rows(tmp_path):
    from tasks.bronze import build_partition
    from tasks.landing import FileContent, LandedFile

    text = next(f for f in adult._bad_files() if f.filename == adult.WRONG_TYPES_FILE).text
    content = FileContent(LandedFile("mem://x.csv", "x.csv", len(text)), text.encode(), "0")
    batch = build_partition([content], "adult", ADULT.columns, "2024-01-01", "run")
    split = split_valid_rows.fn(batch.bronze.to_pandas(), ADULT)
    assert len(split.quarantine) == adult.WRONG_TYPE_BAD_ROWS
    assert len(split.silver) == adult.WRONG_TYPE_GOOD_ROWS


def test_quarantine_limit_fails_with_a_clear_message():
    split = split_valid_rows.fn(bronze({"age": "x"}, {"age": "y"}, {}), ADULT)
    check_quarantine_limit(split, "adult", "2024-01-01", limit=0.7)
    with pytest.raises(QuarantineLimitExceeded, match=r"2 of 3 rows quarantined \(66.7% > limit"):
        check_quarantine_limit(split, "adult", "2024-01-01", limit=0.5)


def test_integers_are_typed_exactly_and_those_beyond_64_bits_are_named_so():
    # a float in between would round 2**53 + 1 and wrap 2**63 to -2**63
    split = split_valid_rows.fn(
        bronze(
            {"fnlwgt": "9007199254740993"},
            {"fnlwgt": "9223372036854775807"},
            {"fnlwgt": "9223372036854775808"},
            {"fnlwgt": "-99999999999999999999"},
            {"capital_gain": "1e3", "fnlwgt": "77516.0"},
        ),
        ADULT,
    )
    assert split.silver["fnlwgt"].tolist() == [9007199254740993, 2**63 - 1, 77516]
    assert split.silver["capital_gain"].tolist() == [2174, 2174, 1000]
    for row in ("r2", "r3"):  # named for what it is, not blamed on greater_than(0)
        assert checks_of(split, row) == [
            "fnlwgt: beyond the 64-bit integers",
            "fnlwgt: not_nullable",
        ]


def test_quarantine_samples_show_the_first_rows_where_they_came_from_and_the_values_named():
    from tasks.validation import quarantine_samples

    frame = bronze({"age": "x", "sex": "Unknown"}, {}, {"age": "y"}, {"race": "?"},
                   issues=[None, None, None, "missing column income"])  # fmt: skip
    frame["_source"] = "s3://landing/adult/ds=2024-01-01/part-1.csv"
    split = split_valid_rows.fn(frame, ADULT)
    samples = quarantine_samples(split, n=2)
    assert {"age: not a valid integer", "age: not_nullable"} < set(checks_of(split, "r0"))
    assert samples == [
        {
            "row_id": "r0",
            "file": "part-1.csv",
            "line": 2,
            "checks": checks_of(split, "r0"),
            "values": "age='x', sex='Unknown'",
        },
        {
            "row_id": "r2",
            "file": "part-1.csv",
            "line": 4,
            "checks": ["age: not a valid integer", "age: not_nullable"],
            "values": "age='y'",
        },
    ]
    (last,) = quarantine_samples(split)[2:]  # five by default: here all three
    assert last["values"] == "race='?'" and "file: missing column income" in last["checks"]
    many = split_valid_rows.fn(bronze(*[{"age": str(-n)} for n in range(1, 8)]), ADULT)
    assert [s["row_id"] for s in quarantine_samples(many)] == ["r0", "r1", "r2", "r3", "r4"]


def test_failed_checks_are_counted_most_frequent_first_then_by_name():
    rows = bronze({"race": "?"}, {"sex": "Unknown"}, {"sex": "Unknown"}, {"age": "x"})
    counts = list(split_valid_rows.fn(rows, ADULT).failed_checks().items())
    assert counts[0][0].startswith("sex: isin") and counts[0][1] == 2
    assert counts[1:] == [
        ("age: not a valid integer", 1),
        ("age: not_nullable", 1),
        ("race: not_nullable", 1),
    ]


def test_the_quarantine_limit_is_a_maximum_fraction_and_names_the_five_most_failed_checks():
    split = split_valid_rows.fn(
        bronze(
            {"age": "x", "race": "?", "sex": "?", "education": "?", "income": "?"},
            {"age": "y", "race": "?", "sex": "?", "education": "?", "relationship": "?"},
            {},
            {},
        ),
        ADULT,
    )
    check_quarantine_limit(split, "adult", "2024-01-01", limit=0.5)  # 2 of 4: at the limit
    with pytest.raises(QuarantineLimitExceeded) as raised:
        check_quarantine_limit(split, "adult", "2024-01-01", limit=0.4)
    named = str(raised.value).split("most failed checks: ")[1].split(", ")
    assert named == [f"{check} ({n})" for check, n in list(split.failed_checks().items())[:5]]
    assert len(split.failed_checks()) > 5 and named[0] == "age: not a valid integer (2)"


def _as_pandera_fails(frame: pd.DataFrame) -> dict[str, set[str]]:
    """Per row id, the checks pandera's own `validate` fails on the typed rows, named as
    validation names them."""
    import pandera.pandas as pandera

    from tasks.casting import cast_series
    from tasks.validation import column_kind

    columns = ADULT.columns
    tokens = ADULT.landing.null_tokens
    typed = pd.DataFrame(
        {name: cast_series(frame[name], column_kind(ADULT, name), tokens) for name in columns}
    ).set_axis(frame["_row_id"])
    found: dict[str, set[str]] = {}
    try:
        ADULT.schema.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        for case in errors.failure_cases.itertuples():
            where = "row" if case.schema_context == "DataFrameSchema" else case.column
            found.setdefault(case.index, set()).add(f"{where}: {case.check}")
    return found


def _as_read_from_parquet(frame: pd.DataFrame):
    """`frame` as the validate flow reads bronze: text columns dictionary encoded, per chunk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_pandas(frame, preserve_index=False)
    half = table.num_rows // 2
    columns = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name in ADULT.columns:
            parts = [column.slice(0, half), column.slice(half)]
            column = pa.chunked_array([pc.dictionary_encode(part) for part in parts])
        columns[name] = column
    return pa.table(columns)


@pytest.mark.parametrize(
    "rows, read", [(400, "text"), (3000, "text"), (3000, "dictionaries")], ids=str
)
def test_the_checks_fail_exactly_the_rows_pandera_fails_under_the_same_names(rows, read):
    import random

    rng = random.Random(7)
    odd = {
        "age": ["16", "91", "", "?", "40.0", "4e1", "x"],
        "fnlwgt": ["0", "-5", "+7", ""],
        "education": ["Bachelors", "Nowhere", ""],
        "education_num": ["13", "3", "17", "0"],
        "workclass": ["?", "", "Unknown", " Private "],
        "sex": ["Female", "F", ""],
        "hours_per_week": ["0", "100", "40"],
        "income": ["<=50K", ">50K", "?", "maybe"],
    }
    frame = bronze(
        *[
            {name: rng.choice(values) for name, values in odd.items() if rng.random() < 0.3}
            for _ in range(rows)
        ]
    )
    given = _as_read_from_parquet(frame) if read == "dictionaries" else frame
    split = split_valid_rows.fn(given, ADULT)
    expected = _as_pandera_fails(frame)
    casts = ("not a valid", "beyond the 64-bit")
    quarantined = {
        row["_row_id"]: {c for c in row["_failed_checks"] if not any(x in c for x in casts)}
        for row in split.quarantine.to_dict("records")
    }
    assert quarantined == expected
    assert rows / 8 < len(quarantined) < rows
    assert any(c.startswith("row: ") for c in set().union(*quarantined.values()))
    typed = split.silver.drop(columns=["_row_id", "_source", "_line", "_ingested_at", "ds"])
    assert typed.dtypes.astype(str).tolist() == [
        "Int64" if name in adult.INT_COLUMNS else "object" for name in ADULT.columns
    ]


def test_validated_rows_carry_the_validate_run_and_each_table_its_version(tmp_path):
    import pyarrow as pa

    from tasks.bronze import bronze_schema
    from tasks.lake import RUN_ID_KEY, Lake
    from tasks.validation import commit_validated, stage_validated

    lake, schema = Lake(str(tmp_path)), bronze_schema(ADULT.columns)
    frame = bronze({}, {"age": "x"})
    frame["_run_id"], frame["_extra"] = "ingest-run", None
    rows = pa.Table.from_pandas(frame, preserve_index=False).select(schema.names).cast(schema)
    lake.replace_slice("bronze", "adult", rows, {"ds": "2024-01-01"}, run_id="ingest-run")
    staged = stage_validated.fn(lake, ADULT, "2024-01-01", "v9")
    versions = commit_validated.fn(lake, ADULT, "2024-01-01", staged, "v9")
    assert set(versions) == {"quarantine", "silver"}
    for table, version in versions.items():
        assert lake.version(table, "adult") == version
        assert lake.commit_metadata(table, "adult", version)[RUN_ID_KEY] == "v9"
        assert lake.read(table, "adult").column("_run_id").to_pylist() == ["v9"]


def test_row_wide_checks_answering_per_value_per_row_or_at_once_fail_what_pandera_fails():
    import pandera.pandas as pandera
    import pyarrow as pa

    from tasks.validation import _PandasView, _row_check_failures

    typed = pa.table({"a": pa.array([1, 5, None, 9]), "b": pa.array([2, None, None, -1])})
    per_value = pandera.Check(lambda df: df > 0, name="positive")
    per_row = pandera.Check(lambda df: df["a"] < 6, name="a below 6")
    schema = pandera.DataFrameSchema(checks=[per_value, per_row])
    failures = {
        label: rows.tolist()
        for label, rows in _row_check_failures(schema, typed, _PandasView(typed), "t")
    }
    assert failures == {
        "row: positive": [False, False, False, True],  # nulls pass, as in pandera
        "row: a below 6": [False, False, False, True],  # a row of nulls only passes
    }
    frame = typed.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    with pytest.raises(pandera.errors.SchemaErrors) as raised:
        schema.validate(frame, lazy=True)
    assert set(raised.value.failure_cases["index"].dropna().astype(int)) == {3}
    at_once = pandera.DataFrameSchema(checks=[pandera.Check(lambda df: False, name="never")])
    with pytest.raises(ValueError, match="schema failed as a whole: row: never"):
        _row_check_failures(at_once, typed, _PandasView(typed), "t")
