"""The typed outcome of a drift report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's drift verdict for one column.

    `method` is evidently's stattest name (e.g. "wasserstein", "jensenshannon", "ks").
    For p-value tests drift means `value < threshold`, for distances `value >= threshold`;
    `drifted` is what evidently concluded.
    """

    column: str
    method: str
    value: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Drift of every reported column between a reference and a current sample.

    `drifted_share` is evidently's share of drifted columns (features and score together);
    `dataset_drift` is evidently's dataset-level verdict for the preset's `drift_share`.
    Row counts are those the report was computed on (after sampling).
    """

    columns: tuple[ColumnDrift, ...]
    drifted_share: float
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, compare=False, repr=False)

    @property
    def drifted(self) -> tuple[ColumnDrift, ...]:
        """The columns evidently found drifted."""
        return tuple(c for c in self.columns if c.drifted)

    def column(self, name: str) -> ColumnDrift:
        """The drift of column `name`; KeyError if it was not reported."""
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(f"column {name!r} is not in the drift report")
