"""Binary search shared by the CPU kernels that bin values against sorted cut points."""

from __future__ import annotations

from numba import njit


@njit(cache=True, inline="always")
def count_at_most(cuts, lo, hi, x):
    """How many of the sorted `cuts[lo:hi]` are <= x (x not NaN)."""
    base = lo
    n = hi - lo
    while n > 0:
        half = n >> 1
        if cuts[base + half] <= x:
            base = base + half + 1
            n = n - half - 1
        else:
            n = half
    return base - lo
