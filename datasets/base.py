"""The contract every dataset module fulfils.

A dataset is declarative: a pandera schema on the shared base, its feature roles, the
columns a landed file carries, and how to produce landing partitions (real and synthetic).
The pipeline knows nothing else about a dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import pandera.pandas as pa


class DatasetModel(pa.DataFrameModel):
    """Shared base of every dataset schema.

    Rows are validated with `lazy=True` so every failing check of every row is reported;
    extra (lineage) columns are allowed and left untouched.
    """

    class Config:
        coerce = True
        strict = False


@dataclass(frozen=True)
class FeatureRoles:
    """What each column is for.

    `numeric` and `categorical` are the model's features in model order (numeric first).
    `protected` are the attributes bias is measured over; a protected attribute may be
    derived (e.g. an age band) by `derive_protected`.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    positive_label: str
    protected: tuple[str, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


@dataclass(frozen=True)
class Dataset:
    """One dataset as the pipeline sees it.

    - `columns`: the columns a landed file must carry, in landing order.
    - `schema`: the pandera model silver rows satisfy (typed, checked).
    - `land`: writes daily landing partitions of the real data, returning the URIs written:
      `land(landing_uri, start, days, drift_from=, bad_files=, seed=, storage_options=)`.
    - `synthesize`: `synthesize(n_rows, drift=0.0, seed=0) -> DataFrame` with `columns`,
      typed as silver, at any size; `drift` in [0, 1] moves the population.
    - `derive_protected`: adds derived protected columns (e.g. `age_band`) to a typed frame.
    """

    name: str
    columns: tuple[str, ...]
    schema: type[DatasetModel]
    roles: FeatureRoles
    land: Callable[..., list[str]]
    synthesize: Callable[..., pd.DataFrame]
    derive_protected: Callable[[pd.DataFrame], pd.DataFrame] = field(default=lambda df: df)
    citation: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def daily_partitions(start: date, days: int) -> list[date]:
    """The `days` consecutive dates from `start`."""
    return [date.fromordinal(start.toordinal() + i) for i in range(days)]
