"""Landed text is typed exactly or named as invalid, never wrapped or rounded, whether a
column is read plain or dictionary encoded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tasks.casting import cast_series, cast_text, decoded, few_distinct, given_text

INTEGERS = {
    " 39 ": 39, "+7": 7, "-5": -5, "40.0": 40, "4e1": 40, "9007199254740993": 9007199254740993,
    "9223372036854775807": 2**63 - 1, "": None, "?": None, None: None,
}  # fmt: skip
NOT_INTEGERS = ["x", "1.5", "1e400"]
BEYOND = ["9223372036854775808", "-9223372036854775809", "1e19"]


def cast(texts: list, kind: str, encoded: bool):
    array = pa.array(texts, pa.string())
    if encoded:
        array = pa.chunked_array(
            [array.slice(0, 5).dictionary_encode(), array.slice(5).dictionary_encode()]
        )
    return cast_text(array, kind, null_tokens=("", "?"))


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "dictionary"])
def test_integers_are_exact_and_the_others_named(encoded):
    texts = list(INTEGERS) + NOT_INTEGERS + BEYOND
    typed = cast(texts, "integer", encoded)
    assert typed.values.type == pa.int64()
    expected = list(INTEGERS.values()) + [None] * (len(NOT_INTEGERS) + len(BEYOND))
    assert typed.values.to_pylist() == expected
    invalid, beyond = len(INTEGERS), len(INTEGERS) + len(NOT_INTEGERS)
    assert np.flatnonzero(typed.invalid).tolist() == list(range(invalid, len(texts)))
    assert np.flatnonzero(typed.beyond).tolist() == list(range(beyond, len(texts)))


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "dictionary"])
def test_floats_booleans_and_text(encoded):
    floats = cast(["1.5", " -2 ", "1e3", "", "x", "nan", "?", "0.1", "7", "inf"], "float", encoded)
    assert floats.values.to_pylist()[:5] == [1.5, -2.0, 1000.0, None, None]
    assert np.flatnonzero(floats.invalid).tolist() == [4, 5]  # "x", and "nan" is no number
    assert floats.values.to_pylist()[-1] == float("inf")
    booleans = cast(
        ["true", "FALSE", "1", "0", "yes", "", " True ", "?", "0", "1"], "boolean", encoded
    )
    assert booleans.values.to_pylist() == [
        True,
        False,
        True,
        False,
        None,
        None,
        True,
        None,
        False,
        True,
    ]
    assert np.flatnonzero(booleans.invalid).tolist() == [4]
    text = cast([" a ", "a", "", "?", "b", None, "a", "b ", "c", "?"], "string", encoded)
    assert pc.cast(decoded(pa.table({"t": text.values})).column("t"), pa.string()).to_pylist() == [
        "a", "a", None, None, "b", None, "a", "b", "c", None,
    ]  # fmt: skip
    assert not text.invalid.any() and not text.beyond.any()


def test_a_column_of_few_distinct_values_is_dictionary_encoded_one_of_many_is_not():
    few = pa.array(["a", "b", "c"] * 1000)
    assert few_distinct(few) is not None and len(few_distinct(few).dictionary) == 3
    assert few_distinct(pa.array([str(i) for i in range(3000)])) is None
    assert few_distinct(pa.array(["a", "b"] * 100)) is None  # too short to be worth it
    typed = cast_text(pa.array([" a", "a ", "", "b"] * 300), "string").values
    assert pa.types.is_dictionary(typed.type)
    assert typed.dictionary.to_pylist() == ["a", "b"] and typed.null_count == 300


def test_a_series_is_typed_on_its_index_as_pandas_types():
    text = pd.Series(["1", None, "x"], index=[10, 11, 12])
    numbers = cast_series(text, "integer")
    assert str(numbers.dtype) == "Int64" and numbers.index.tolist() == [10, 11, 12]
    assert numbers.iloc[0] == 1 and numbers.isna().tolist() == [False, True, True]
    words = cast_series(pd.Series([" a", ""]), "string")
    assert words.dtype == object and words.tolist() == ["a", None]


def test_given_text_is_stripped_with_the_null_tokens_null():
    assert given_text(pa.array([" a ", "NA", "", None]), ("NA",)).to_pylist() == [
        "a",
        None,
        "",
        None,
    ]


def test_the_kind_of_each_schema_dtype():
    from tasks.casting import kind_of

    kinds = {"Int64": "integer", "int32": "integer", "Float64": "float", "float32": "float"}
    kinds |= {"boolean": "boolean", "bool": "boolean", "str": "string", "object": "string"}
    assert {dtype: kind_of(dtype) for dtype in kinds} == kinds


def test_the_64_bit_edges_and_numerals_a_float_holds_exactly():
    texts = ["-9223372036854775808", "9.007199254740992e15", "9.3e18", "-1e19", "nan", "1"]
    typed = cast_text(pa.array(texts), "integer")
    assert typed.values.to_pylist() == [-(2**63), 2**53, None, None, None, 1]
    assert typed.invalid.tolist() == [False, False, True, True, True, False]
    assert typed.beyond.tolist() == [False, False, True, True, False, False]


def test_text_of_other_types_is_typed_as_its_text():
    numbers = cast_text(pa.array([1, None, 3]), "integer")
    assert numbers.values.to_pylist() == [1, None, 3] and not numbers.invalid.any()
    binary = pa.array([b"7", b"8"] * 600).dictionary_encode()
    assert cast_text(binary, "integer").values.to_pylist() == [7, 8] * 600


@pytest.mark.parametrize("kind", ["integer", "float", "boolean", "string"])
def test_a_dictionary_column_of_nulls_only_is_typed_null_and_valid(kind):
    nulls = pa.DictionaryArray.from_arrays(pa.nulls(3, pa.int32()), pa.array([], pa.string()))
    cast = cast_text(nulls, kind)
    assert cast.values.null_count == 3 and not cast.invalid.any()


@pytest.mark.parametrize("kind", ["integer", "float"])
def test_a_null_token_that_reads_as_a_number_is_null_in_a_clean_column(kind):
    typed = cast_text(pa.array(["1", "-1", "2", "nan"]), kind, null_tokens=("-1", "nan"))
    assert typed.values.to_pylist() == [1, None, 2, None] and not typed.invalid.any()


def test_chunks_of_few_distinct_values_are_typed_as_one_column():
    values = ["7", " 8", "?", "x"] * 500
    chunked = pa.chunked_array(
        [pa.array(values[:1200]).dictionary_encode(), pa.array(values[1200:]).dictionary_encode()]
    )
    typed = cast_text(chunked, "integer", null_tokens=("?",))
    plain = cast_text(pa.array(values), "integer", null_tokens=("?",))
    assert typed.values.to_pylist() == plain.values.to_pylist() == [7, 8, None, None] * 500
    assert np.flatnonzero(typed.invalid).tolist() == list(range(3, 2000, 4))


@pytest.mark.parametrize(
    "chunks",
    [[[1, None, 3], [4]], [[1.5, None]], [[True, None, False]], [[1, 2]], [["a", None, "a"]]],
)
def test_a_typed_column_as_pandas_is_what_arrow_converts(chunks):
    from tasks.casting import PANDAS_TYPES, as_pandas

    column = pa.chunked_array(chunks)
    if column.type == pa.string():
        column = column.dictionary_encode()
    expected = column.to_pandas(types_mapper=PANDAS_TYPES.get)
    pd.testing.assert_series_equal(as_pandas(column), expected)
