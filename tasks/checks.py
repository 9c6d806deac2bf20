"""The dataset schema's checks, evaluated on typed Arrow columns.

pandera declares the checks (`datasets/*.py`); the built-in column checks are evaluated
here with Arrow compute, in one pass per check over the column. A column check Arrow does
not have, and every row-wide (DataFrameSchema) check, is run by pandera itself on those
columns as pandas. Each failure is named as pandera names it (`check.error` or its name), a
null failing a non-nullable column as `not_nullable`; like pandera's defaults, a check
ignores nulls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc

Passes = Callable[[pa.Array, dict], pa.Array]


def _in_range(values: pa.Array, s: dict) -> pa.Array:
    low = (pc.greater_equal if s.get("include_min", True) else pc.greater)(values, s["min_value"])
    high = (pc.less_equal if s.get("include_max", True) else pc.less)(values, s["max_value"])
    return pc.and_(low, high)


def _str_length(values: pa.Array, s: dict) -> pa.Array:
    length = pc.utf8_length(values)
    passes = pc.is_valid(values)
    if s.get("min_value") is not None:
        passes = pc.and_(passes, pc.greater_equal(length, s["min_value"]))
    if s.get("max_value") is not None:
        passes = pc.and_(passes, pc.less_equal(length, s["max_value"]))
    return passes


ARROW_CHECKS: dict[str, Passes] = {
    "greater_than": lambda v, s: pc.greater(v, s["min_value"]),
    "greater_than_or_equal_to": lambda v, s: pc.greater_equal(v, s["min_value"]),
    "less_than": lambda v, s: pc.less(v, s["max_value"]),
    "less_than_or_equal_to": lambda v, s: pc.less_equal(v, s["max_value"]),
    "in_range": _in_range,
    "equal_to": lambda v, s: pc.equal(v, s["value"]),
    "not_equal_to": lambda v, s: pc.not_equal(v, s["value"]),
    "isin": lambda v, s: pc.is_in(v, value_set=pa.array(list(s["allowed_values"]), v.type)),
    "notin": lambda v, s: pc.invert(
        pc.is_in(v, value_set=pa.array(list(s["forbidden_values"]), v.type))
    ),
    "str_length": _str_length,
    "str_startswith": lambda v, s: pc.starts_with(v, s["string"]),
    "str_endswith": lambda v, s: pc.ends_with(v, s["string"]),
}
"""pandera's built-in column checks (by name, with their statistics) as Arrow compute."""


def check_label(check: pandera.Check) -> str:
    """How pandera names a failure of `check`."""
    return check.error or check.name


def column_failures(
    name: str, values: pa.Array, column: pandera.Column, as_pandas: Callable[[], pd.Series]
) -> Iterator[tuple[str, np.ndarray]]:
    """(failure label, per-row failed) for each check of `column` that some row fails."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    given = pc.is_valid(values).to_numpy(zero_copy_only=False) if values.null_count else True
    if not column.nullable and values.null_count:
        yield f"{name}: not_nullable", ~given
    for check in column.checks:
        passes = [_arrow_passes(check, chunk) for chunk in chunks]
        if all(p is EVERY_ROW for p in passes):
            continue
        if any(p is None for p in passes):
            passes = pandera_passes(check, as_pandas())
        else:
            passes = np.concatenate(
                [
                    np.ones(len(c), bool) if p is EVERY_ROW else p
                    for p, c in zip(passes, chunks, strict=True)
                ]
            )
        failed = given & ~passes  # a null passes; `given` is True where none is null
        if failed.any():
            yield f"{name}: {check_label(check)}", failed


EVERY_ROW = object()
"""What `_arrow_passes` answers when every value passes."""


def _arrow_passes(check: pandera.Check, values: pa.Array) -> np.ndarray | object | None:
    """Per value, whether it passes `check` (nulls pass), evaluated by Arrow; `EVERY_ROW`
    when all do; None when Arrow cannot evaluate it."""
    evaluate = ARROW_CHECKS.get(check.name)
    if evaluate is None or not check.ignore_na or check.element_wise or check.groupby:
        return None
    distinct = values if pa.types.is_dictionary(values.type) else None
    try:
        passes = evaluate(distinct.dictionary if distinct else values, check.statistics)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
        return None
    passes = pc.fill_null(passes, True)
    if pc.all(passes).as_py() is not False:
        return EVERY_ROW
    passes = passes.to_numpy(zero_copy_only=False)
    if distinct is None:
        return passes
    # evaluated once per distinct value; a null (past the last value) passes
    codes = pc.fill_null(distinct.indices, len(passes)).to_numpy(zero_copy_only=False)
    return np.append(passes, True)[codes]


def pandera_passes(check: pandera.Check, data: pd.Series) -> np.ndarray:
    """Per value of `data`, whether it passes the column check `check`, as pandera runs it
    (a check may answer for the whole column with one bool)."""
    output = check(data).check_output
    if not isinstance(output, pd.Series):
        return np.full(len(data), bool(output))
    # pandera leaves nulls out of what the check sees; `column_failures` never fails a null
    return output.reindex(data.index, fill_value=True).to_numpy(dtype=bool)
