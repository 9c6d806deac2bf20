"""Encode raw numeric and dictionary-coded categorical columns into the forest's float32 matrix.

Categorical values become their index in the training vocabulary as a float (what the model is
trained on); a null code or a string outside the vocabulary becomes NaN (missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, prange

from kernels.device import CudaTarget, cuda_target, resolve

_ROW_BLOCK = 4096


def build_lookup(batch_dictionary: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """For each string of a batch's dictionary, its index in the training vocabulary, or -1.

    A string listed several times in the vocabulary maps to its first position.
    """
    index: dict[Any, int] = {}
    for i, s in enumerate(vocabulary):
        index.setdefault(s, i)
    return np.fromiter(
        (index.get(s, -1) for s in batch_dictionary), dtype=np.int32, count=len(batch_dictionary)
    )


def encode(
    numeric: Sequence[Any],
    categorical: Sequence[tuple[Any, Any]],
    device: str = "auto",
) -> Any:
    """The dense float32 (n_rows, len(numeric) + len(categorical)) matrix of a batch.

    `numeric`: one float or int array per numeric feature (NaN = missing).
    `categorical`: one (codes, lookup) pair per categorical feature; codes index the batch
    dictionary (-1 = null), lookup is `build_lookup(batch_dictionary, vocabulary)`.
    Columns are numeric first, then categorical; a categorical value is float(lookup[code]),
    NaN when code == -1 or lookup[code] == -1; a code outside [-1, len(lookup)) is an error.
    `device`: "cpu", "gpu", or "auto" (GPU iff an input is a CuPy array). NumPy in, NumPy out on
    the CPU; the GPU returns a CuPy array.
    """
    arrays = [*numeric, *(c for pair in categorical for c in pair)]
    n_cols = len(numeric) + len(categorical)
    if n_cols == 0:
        raise ValueError("encode needs at least one column")
    n_rows = _common_length(numeric, categorical)
    if resolve(device, *arrays) == "gpu":
        return _encode_gpu(numeric, categorical, n_rows)
    return _encode_cpu(numeric, categorical, n_rows)


def _common_length(numeric: Sequence[Any], categorical: Sequence[tuple[Any, Any]]) -> int:
    lengths = {len(col) for col in numeric} | {len(codes) for codes, _ in categorical}
    for col in [*numeric, *(codes for codes, _ in categorical)]:
        if getattr(col, "ndim", 1) != 1:
            raise ValueError("every column must be 1-D")
    if len(lengths) != 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    return lengths.pop()


def _encode_cpu(
    numeric: Sequence[Any], categorical: Sequence[tuple[Any, Any]], n_rows: int
) -> np.ndarray:
    # Plain arrays, not numba's typed lists: those compile on their first use in every
    # process (about 1 s of each new Dask worker's first shard), arrays load from the cache.
    num = np.empty((len(numeric), n_rows), np.float32)
    for j, col in enumerate(numeric):
        num[j] = col
    codes = np.empty((len(categorical), n_rows), np.int32)
    for j, (c, _) in enumerate(categorical):
        codes[j] = c
    lookup_ends = np.cumsum([len(lookup) for _, lookup in categorical], dtype=np.int64)
    lookups = np.concatenate(
        [np.zeros(0, np.int32), *(np.asarray(lookup, np.int32) for _, lookup in categorical)]
    )
    out = np.empty((n_rows, len(numeric) + len(categorical)), np.float32)
    bad = _encode_kernel(num, codes, lookups, lookup_ends, out)
    if bad:
        raise ValueError(_invalid_message())
    return out


def _invalid_message() -> str:
    return "a categorical code is outside [-1, len(lookup)): codes must index the batch dictionary"


@njit(parallel=True, cache=True)
def _encode_kernel(numeric, codes, lookups, lookup_ends, out):
    """`numeric` (n_num, n_rows), `codes` (n_cat, n_rows); categorical j's lookup is
    lookups[lookup_ends[j - 1]:lookup_ends[j]]."""
    n_rows, n_cols = out.shape
    n_num = numeric.shape[0]
    n_blocks = (n_rows + _ROW_BLOCK - 1) // _ROW_BLOCK
    bad = 0
    for blk in prange(n_blocks):
        r0 = blk * _ROW_BLOCK
        r1 = min(n_rows, r0 + _ROW_BLOCK)
        for j in range(n_num):
            for i in range(r0, r1):
                out[i, j] = numeric[j, i]
        for j in range(n_cols - n_num):
            start = lookup_ends[j - 1] if j > 0 else 0
            size = lookup_ends[j] - start
            for i in range(r0, r1):
                code = codes[j, i]
                v = np.float32(np.nan)
                if 0 <= code < size:
                    ident = lookups[start + code]
                    if ident >= 0:
                        v = np.float32(ident)
                elif code != -1:
                    bad += 1
                out[i, n_num + j] = v
    return bad


def _encode_gpu(
    numeric: Sequence[Any],
    categorical: Sequence[tuple[Any, Any]],
    n_rows: int,
    target: CudaTarget | None = None,
) -> Any:
    target = target or cuda_target()
    xp = target.xp
    num = [xp.ascontiguousarray(xp.asarray(c, dtype=xp.float32)) for c in numeric]
    codes = [xp.ascontiguousarray(xp.asarray(c, dtype=xp.int32)) for c, _ in categorical]
    lookups = [xp.ascontiguousarray(xp.asarray(lk, dtype=xp.int32)) for _, lk in categorical]
    n_cols = len(num) + len(codes)
    out = xp.empty((n_rows, n_cols), xp.float32)
    if n_rows == 0:
        return out

    def pointers(cols: list[Any]) -> Any:
        return xp.asarray(np.array([target.address(c) for c in cols] or [0], np.uint64))

    sizes = xp.asarray(np.array([lk.shape[0] for lk in lookups] or [0], np.int64))
    invalid = xp.zeros(1, xp.int32)
    grid = max(1, min(-(-n_rows * n_cols // 256), target.sm_count * 32))
    kernel = target.module("encode.cu", ()).get_function("encode_columns")
    kernel(
        (grid,),
        (256,),
        (
            pointers(num),
            np.int32(len(num)),
            pointers(codes),
            pointers(lookups),
            sizes,
            np.int32(len(codes)),
            np.int64(n_rows),
            out,
            invalid,
        ),
    )
    if int(invalid[0]):
        raise ValueError(_invalid_message())
    return out
