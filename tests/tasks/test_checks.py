"""A schema's checks evaluated in Arrow fail exactly the values pandera's own checks fail,
under the same names; a check Arrow has no twin for is run by pandera."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pytest

from tasks.checks import ARROW_CHECKS, column_failures

VALUES = [None, -5, 0, 1, 5, 9, 10, 11, 99]
TEXTS = [None, "", "a", "ab", "abc", "abcd", "xa", "ax", "b"]
NUMBER_CHECKS = [
    pandera.Check.in_range(0, 10),
    pandera.Check.in_range(0, 10, include_min=False, include_max=False),
    pandera.Check.greater_than(1),
    pandera.Check.less_than(10),
    pandera.Check.equal_to(5),
    pandera.Check.not_equal_to(5),
    pandera.Check.notin([0, 99]),
    pandera.Check(lambda values: values % 2 == 1, error="odd"),  # no Arrow twin
    pandera.Check(lambda value: value != 9, element_wise=True, error="not nine"),
    pandera.Check(lambda values: values.max() < 50, error="below 50"),  # one bool per column
]
TEXT_CHECKS = [
    pandera.Check.str_length(1, 3),
    pandera.Check.str_length(min_value=2),
    pandera.Check.str_length(max_value=1),
    pandera.Check.str_startswith("a"),
    pandera.Check.str_endswith("a"),
    pandera.Check.isin(["a", "b"]),
]


def pandera_failures(series: pd.Series, check: pandera.Check, nullable: bool) -> set[str]:
    """(value index, failure) pairs of pandera's own validation of one column."""
    schema = pandera.DataFrameSchema({"x": pandera.Column(checks=[check], nullable=nullable)})
    try:
        schema.validate(pd.DataFrame({"x": series}), lazy=True)
    except pandera.errors.SchemaErrors as errors:
        found = set()
        for case in errors.failure_cases.itertuples():
            # a check that answers for the whole column fails each of its values
            rows = series.dropna().index if pd.isna(case.index) else [case.index]
            found |= {f"{int(row)} x: {case.check}" for row in rows}
        return found
    return set()


def arrow_failures(values: pa.Array, series: pd.Series, check, nullable: bool) -> set[str]:
    """The failures `column_failures` finds; pandas is only at hand for checks that Arrow
    has no twin for (a built-in check evaluated through pandas is a bug, not a fallback)."""
    column = pandera.Column(checks=[check], nullable=nullable)

    def as_pandas() -> pd.Series:
        assert check.name not in ARROW_CHECKS, f"{check.name} went through pandas"
        return series

    found = column_failures("x", values, column, as_pandas)
    return {f"{row} {label}" for label, rows in found for row in np.flatnonzero(rows)}


@pytest.mark.parametrize("nullable", [True, False], ids=["nullable", "not-nullable"])
@pytest.mark.parametrize("check", NUMBER_CHECKS, ids=lambda check: check.error or check.name)
def test_number_checks_fail_what_pandera_fails(check, nullable):
    series = pd.Series(VALUES, dtype="Int64")
    values = pa.array(VALUES, pa.int64())
    expected = pandera_failures(series, check, nullable)
    assert arrow_failures(values, series, check, nullable) == expected
    assert expected, "each check fails some value"


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "dictionary"])
@pytest.mark.parametrize("check", TEXT_CHECKS, ids=lambda check: check.error or check.name)
def test_text_checks_fail_what_pandera_fails_plain_or_dictionary_encoded(check, encoded):
    series = pd.Series(TEXTS, dtype=object)
    values = pa.array(TEXTS, pa.string())
    if encoded:
        values = pa.chunked_array(
            [values.slice(0, 4).dictionary_encode(), values.slice(4).dictionary_encode()]
        )
    expected = pandera_failures(series, check, nullable=True)
    assert arrow_failures(values, series, check, nullable=True) == expected
    assert expected, "each check fails some value"
