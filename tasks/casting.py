"""Landed text typed as the dataset's schema says, column by column, in Arrow.

One typing for the pipeline, replays, labels and the tests: a value is stripped, a null
token is null, and a value that does not cast is null and named as invalid (integers
beyond 64 bits apart), never wrapped or rounded. A clean column casts in one Arrow call;
only a column holding something Arrow does not parse goes through the careful path, and
only its odd values through Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ARROW_TYPES = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
INT64_RANGE = (-(2**63), 2**63 - 1)
FLOAT_EXACT = 2**53  # beyond it a float no longer holds every integer
WHOLE = r"^[+-]?\d+(?:\.0*)?$"  # digits, maybe with a zero fraction ("39.0")
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def kind_of(dtype: object) -> str:
    """The kind (`integer`, `float`, `boolean`, `string`) of a schema dtype."""
    name = str(dtype).lower()
    if "int" in name:
        return "integer"
    if "float" in name:
        return "float"
    if "bool" in name:
        return "boolean"
    return "string"


@dataclass(frozen=True)
class Cast:
    """A column typed: its values, and per row whether a given value did not cast
    (`invalid`) and, of those, which are whole numbers beyond the 64-bit integers."""

    values: pa.Array
    invalid: np.ndarray
    beyond: np.ndarray


def given_text(text: pa.Array, null_tokens: Sequence[str] = ("",)) -> pa.Array:
    """Landed text stripped, with the null tokens null."""
    text = pc.utf8_trim_whitespace(_string_array(text))
    tokens = pa.array(list(null_tokens), pa.string())
    return pc.if_else(pc.is_in(text, value_set=tokens), pa.scalar(None, pa.string()), text)


def cast_text(text: pa.Array, kind: str, null_tokens: Sequence[str] = ("",)) -> Cast:
    """`text` as `kind`: see the module's docstring. A column of few distinct values (most
    landed columns are categories or small numbers) is typed once per distinct value; its
    text stays dictionary encoded."""
    if isinstance(text, pa.ChunkedArray) and _few_in_every_chunk(text):
        text = text.unify_dictionaries().combine_chunks()  # typed once for all chunks
    if isinstance(text, pa.ChunkedArray) and text.num_chunks > 1:
        casts = [cast_text(chunk, kind, null_tokens) for chunk in text.chunks]
        return Cast(
            pa.chunked_array([c.values for c in casts]),
            np.concatenate([c.invalid for c in casts]),
            np.concatenate([c.beyond for c in casts]),
        )
    text = _string_array(text)
    distinct = few_distinct(text)
    if distinct is None:
        return _cast(text, kind, null_tokens)
    if not len(distinct.dictionary):  # every value null (a batch of a file without it)
        return _cast(pa.nulls(len(distinct), pa.string()), kind, null_tokens)
    per_value = _cast(distinct.dictionary, kind, null_tokens)
    indices = distinct.indices
    if kind == "string":
        typed = per_value.values
        if typed.null_count or len(pc.unique(typed)) < len(typed):
            # null tokens became null and stripped values may repeat: re-encoded
            distinct_values = pc.unique(typed.drop_null())
            renumbered = pc.take(pc.index_in(typed, value_set=distinct_values), indices)
            values = pa.DictionaryArray.from_arrays(renumbered, distinct_values, safe=False)
        else:
            values = pa.DictionaryArray.from_arrays(indices, typed, safe=False)
    else:
        values = pc.take(per_value.values, indices)
    if not per_value.invalid.any():  # the usual case: no row to find (zeros cost nothing)
        none = np.zeros(len(indices), dtype=bool)
        return Cast(values, none, none)
    given = pc.is_valid(indices).to_numpy(zero_copy_only=False)
    positions = pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)
    return Cast(values, per_value.invalid[positions] & given, per_value.beyond[positions] & given)


def _few_in_every_chunk(text: pa.ChunkedArray) -> bool:
    """Whether `text` is dictionary encoded with at most one distinct value in four
    (counting each chunk's dictionary)."""
    return pa.types.is_dictionary(text.type) and 4 * sum(
        len(chunk.dictionary) for chunk in text.chunks
    ) <= len(text)


def few_distinct(values: pa.Array) -> pa.DictionaryArray | None:
    """`values` dictionary encoded, when they hold at most one distinct value in four."""
    if pa.types.is_dictionary(values.type):
        return values
    if len(values) < 1024 or len(pc.unique(values.slice(0, 1024))) > 256:
        return None
    encoded = pc.dictionary_encode(values)
    return encoded if len(encoded.dictionary) * 4 <= len(values) else None


def _cast(text: pa.Array, kind: str, null_tokens: Sequence[str]) -> Cast:
    none = np.zeros(len(text), dtype=bool)
    if kind in ("integer", "float") and not _any_cast(tuple(null_tokens), kind):
        try:  # clean numbers (no blank, no null token) cast as they are
            values = pc.cast(text, ARROW_TYPES[kind])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            return Cast(values, none, none) if kind == "integer" else _not_nan(text, values)
    given = given_text(text, null_tokens)
    if kind == "string":
        return Cast(given, none, none)
    if kind == "boolean":
        lowered = pc.utf8_lower(given)
        known = pa.array(list(BOOLEANS), pa.string())
        values = pc.if_else(
            pc.is_in(lowered, value_set=known),
            pc.is_in(lowered, value_set=pa.array(["true", "1"])),
            None,
        )
        return Cast(values, _given_but_null(given, values), none)
    if kind == "integer":
        try:
            return Cast(pc.cast(given, pa.int64()), none, none)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _integers(given)
    try:
        values = pc.cast(given, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = pd.to_numeric(given.to_pandas(), errors="coerce")
        values = pa.array(numbers.to_numpy(dtype=float, na_value=np.nan), pa.float64())
    return _not_nan(given, values)


def _not_nan(given: pa.Array, values: pa.Array) -> Cast:
    """Floats cast from `given`, with "nan" invalid: not a number that landed, as a value
    that does not parse."""
    nan = pc.fill_null(pc.is_nan(values), False)
    if pc.any(nan).as_py():
        values = pc.if_else(nan, None, values)
    none = np.zeros(len(given), dtype=bool)
    return Cast(values, _given_but_null(given, values), none)


@lru_cache
def _any_cast(tokens: tuple[str, ...], kind: str) -> bool:
    """Whether a null token reads as a number of `kind` (then it must be looked for)."""
    for token in tokens:
        try:
            pc.cast(pa.array([token]), ARROW_TYPES[kind])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return True
    return False


PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


MASKED_ARRAYS = {
    pa.int64(): pd.arrays.IntegerArray,
    pa.float64(): pd.arrays.FloatingArray,
    pa.bool_(): pd.arrays.BooleanArray,
}


def as_pandas(column: pa.ChunkedArray) -> pd.Series:
    """A typed column as pandas, as `to_pandas(types_mapper=PANDAS_TYPES.get)` makes it
    (Int64, Float64, boolean; dictionaries as Categorical), without its per-value copy:
    numbers without nulls are handed over as they are."""
    column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_dictionary(column.type) and column.dictionary.null_count == 0:
        codes = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
        categories = pd.CategoricalDtype(column.dictionary.to_pandas())
        return pd.Series(pd.Categorical.from_codes(codes, dtype=categories, validate=False))
    masked = MASKED_ARRAYS.get(column.type)
    if masked is None:
        return column.to_pandas(types_mapper=PANDAS_TYPES.get)
    if column.null_count:
        mask = pc.is_null(column).to_numpy(zero_copy_only=False)
        column = pc.fill_null(column, False if column.type == pa.bool_() else 0)
    else:
        mask = np.zeros(len(column), dtype=bool)
    return pd.Series(masked(column.to_numpy(zero_copy_only=False), mask, copy=False))


def cast_series(text: pd.Series, kind: str, null_tokens: Sequence[str] = ("",)) -> pd.Series:
    """`cast_text` of a pandas Series, as a Series on its index (Int64, Float64, boolean;
    text as objects with None for null)."""
    values = cast_text(text, kind, null_tokens).values
    typed = values.to_pandas(types_mapper=PANDAS_TYPES.get)
    if kind == "string":
        typed = typed.astype(object).where(typed.notna(), None)
    return typed.set_axis(text.index)


def _integers(given: pa.Array) -> Cast:
    """The careful path: whole numbers in digits converted without a float in between;
    other numerals ("1e3") only where a float holds them exactly."""
    whole = pc.fill_null(pc.match_substring_regex(given, WHOLE), False)
    digits = pc.replace_substring_regex(pc.replace_substring_regex(given, r"\.0*$", ""), r"^\+", "")
    short = pc.and_(whole, pc.less_equal(pc.utf8_length(pc.utf8_ltrim(digits, "-")), 18))
    values = pc.cast(pc.if_else(short, digits, None), pa.int64()).to_pandas(
        types_mapper=PANDAS_TYPES.get
    )
    beyond = np.zeros(len(given), dtype=bool)
    long = np.flatnonzero(pc.and_(whole, pc.invert(short)).to_numpy(zero_copy_only=False))
    for index, text in zip(long, pc.take(digits, long).to_pylist(), strict=True):
        number = int(text)
        if INT64_RANGE[0] <= number <= INT64_RANGE[1]:
            values.iat[index] = number
        else:
            beyond[index] = True
    others = np.flatnonzero(
        pc.and_(pc.is_valid(given), pc.invert(whole)).to_numpy(zero_copy_only=False)
    )
    if len(others):
        numbers = pd.to_numeric(pd.Series(pc.take(given, others).to_pylist()), errors="coerce")
        exact = (numbers.abs() <= FLOAT_EXACT) & (numbers == np.round(numbers))
        for index, number in zip(others[exact.to_numpy()], numbers[exact], strict=True):
            values.iat[index] = int(number)
        beyond[others] |= (numbers.abs() >= 2.0**63).fillna(False).to_numpy(dtype=bool)
    typed = pa.array(values, pa.int64(), from_pandas=True)
    return Cast(typed, _given_but_null(given, typed), beyond)


def _given_but_null(given: pa.Array, values: pa.Array) -> np.ndarray:
    return pc.and_(pc.is_valid(given), pc.is_null(values)).to_numpy(zero_copy_only=False)


def _string_array(text) -> pa.Array:
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if isinstance(text, pd.Series):
        text = pa.array(text.astype(object).where(text.notna(), None), pa.string())
    if pa.types.is_dictionary(text.type):
        if text.dictionary.type == pa.string():
            return text
        dictionary = pc.cast(text.dictionary, pa.string())
        return pa.DictionaryArray.from_arrays(text.indices, dictionary, safe=False)
    return text if text.type == pa.string() else pc.cast(text, pa.string())


def decoded(table: pa.Table) -> pa.Table:
    """`table` with its dictionary encoded columns as plain arrays of their values."""
    fields = [
        field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field
        for field in table.schema
    ]
    return table.cast(pa.schema(fields))
