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
    """`text` as `kind`: see the module's docstring."""
    given = given_text(text, null_tokens)
    none = np.zeros(len(given), dtype=bool)
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
    try:
        return Cast(pc.cast(given, ARROW_TYPES[kind]), none, none)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if kind == "integer":
        return _integers(given)
    numbers = pd.to_numeric(given.to_pandas(), errors="coerce")
    values = pa.array(
        numbers.to_numpy(dtype=float, na_value=np.nan), pa.float64(), from_pandas=True
    )
    return Cast(values, _given_but_null(given, values), none)


PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


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
    return text if text.type == pa.string() else pc.cast(text, pa.string())
