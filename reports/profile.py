"""Full-data drift: a model's reference profile (bin edges and reference counts per column)
and PSI / Jensen-Shannon against the merged histograms of a scored day.

A column's histogram has `len(edges) + 2` counts: a value's bin is the number of edges <= x
(`len(edges) + 1` bins), and the last count is the missing bin (NaN; for a categorical column
also a value outside the training vocabulary). That is the layout of
`kernels.histogram.histogram` trimmed to the column's own bins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from reports.result import ColumnDrift, DriftResult

SCORE_COLUMN = "score"
"""The profile's column for the model's score (as in the reference window)."""

NUMERIC, CATEGORICAL, SCORE = "numeric", "categorical", "score"
PSI_EPSILON = 1e-4
"""Bin shares below this are raised to it (then renormalised) before PSI, so an empty bin on
one side gives a finite term; a bin holding < 0.01% of the rows on both sides adds nothing."""

_FORMAT = 1


@dataclass(frozen=True)
class HistogramDriftThresholds:
    """Effect-size thresholds for full-data drift: values at or above them are drift.

    They are distances between two distributions, not p-values, so they do not fall as the
    number of rows grows: a day of 10M rows from the reference population stays below them
    (sampling noise of PSI over k bins is about (k - 1) * (1/N_ref + 1/N_cur)).

    `psi`: population stability index of numeric features and of the score; 0.1-0.2 is the
    usual "moderate shift" band, >= 0.2 (default) a shift worth acting on.
    `jensen_shannon`: Jensen-Shannon distance (base 2, in [0, 1]) of categorical features;
    0.1 is evidently's default for the same test.
    `drift_share`: the share of drifted columns (features and score) at which the day has
    dataset drift (evidently's `DataDriftPreset` default, 0.5).
    """

    psi: float = 0.2
    jensen_shannon: float = 0.1
    drift_share: float = 0.5

    def __post_init__(self) -> None:
        if self.psi <= 0 or not 0 < self.jensen_shannon <= 1 or not 0 < self.drift_share <= 1:
            raise ValueError(f"thresholds out of range: {self}")


@dataclass(frozen=True, eq=False)
class ColumnProfile:
    """One column of a reference profile: its bin edges and reference counts."""

    name: str
    kind: str  # NUMERIC, CATEGORICAL or SCORE
    edges: np.ndarray  # float32, ascending, distinct
    reference: np.ndarray  # int64, len(edges) + 2 (last: missing / unknown)
    labels: tuple[str, ...] = ()  # categorical: the vocabulary, code order

    def __post_init__(self) -> None:
        if self.kind not in (NUMERIC, CATEGORICAL, SCORE):
            raise ValueError(f"column {self.name!r}: unknown kind {self.kind!r}")
        edges = np.asarray(self.edges, dtype=np.float32).ravel()
        reference = np.asarray(self.reference, dtype=np.int64).ravel()
        if np.isnan(edges).any() or (np.diff(edges) <= 0).any():
            raise ValueError(f"column {self.name!r}: edges must be ascending and distinct")
        if reference.shape != (edges.size + 2,) or (reference < 0).any():
            raise ValueError(
                f"column {self.name!r}: {reference.size} reference counts for "
                f"{edges.size} edges (need {edges.size + 2}, non-negative)"
            )
        if self.kind == CATEGORICAL and len(self.labels) != edges.size + 1:
            raise ValueError(f"column {self.name!r}: {len(self.labels)} labels for its codes")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "reference", reference)

    @property
    def method(self) -> str:
        """ "jensenshannon" for a categorical column, else "psi"."""
        return "jensenshannon" if self.kind == CATEGORICAL else "psi"

    @property
    def n_counts(self) -> int:
        return self.edges.size + 2

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColumnProfile):
            return NotImplemented
        return (
            (self.name, self.kind, self.labels) == (other.name, other.kind, other.labels)
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.reference, other.reference)
        )

    def to_json(self) -> dict:
        data = {
            "name": self.name,
            "kind": self.kind,
            # float32 -> float is exact, and JSON keeps a float64 exactly
            "edges": [float(e) for e in self.edges],
            "reference": [int(c) for c in self.reference],
        }
        return data | ({"labels": list(self.labels)} if self.labels else {})

    @classmethod
    def from_json(cls, data: Mapping) -> ColumnProfile:
        return cls(
            name=data["name"],
            kind=data["kind"],
            edges=np.asarray(data["edges"], dtype=np.float32),
            reference=np.asarray(data["reference"], dtype=np.int64),
            labels=tuple(data.get("labels", ())),
        )


@dataclass(frozen=True)
class ReferenceProfile:
    """What full-data drift of one model version is measured against, computed once from
    its training window: the model's features in its input order (numeric, then
    categorical), then the score. Numeric edges are quantiles of the training rows;
    categorical bins are one per vocabulary code plus the missing/unknown bin; score edges are
    quantiles of the holdout scores. Reference counts are those of the out-of-sample holdout
    rows (with their scores), so an unseen day of the same population is not drifted."""

    columns: tuple[ColumnProfile, ...]
    reference_rows: int

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate profile columns: {names}")
        if [c.kind for c in self.columns].count(SCORE) != 1 or self.columns[-1].kind != SCORE:
            raise ValueError("a profile ends with exactly one score column")
        for column in self.columns:
            if int(column.reference.sum()) != self.reference_rows:
                raise ValueError(
                    f"column {column.name!r}: reference counts sum to "
                    f"{int(column.reference.sum())}, not {self.reference_rows} rows"
                )

    @property
    def features(self) -> tuple[ColumnProfile, ...]:
        return self.columns[:-1]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.features)

    @property
    def score(self) -> ColumnProfile:
        return self.columns[-1]

    def feature_edges(self) -> list[np.ndarray]:
        """The edges of each feature in the model's input order (for the histogram kernel)."""
        return [c.edges for c in self.features]

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"column {name!r} is not in the profile")

    def to_json(self) -> dict:
        return {
            "format": _FORMAT,
            "reference_rows": int(self.reference_rows),
            "columns": [c.to_json() for c in self.columns],
        }

    @classmethod
    def from_json(cls, data: Mapping) -> ReferenceProfile:
        if data.get("format") != _FORMAT:
            raise ValueError(f"unsupported profile format {data.get('format')!r}")
        return cls(
            columns=tuple(ColumnProfile.from_json(c) for c in data["columns"]),
            reference_rows=int(data["reference_rows"]),
        )


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)


def _pair(ref_counts, cur_counts) -> tuple[np.ndarray, np.ndarray]:
    p, q = _shares(ref_counts), _shares(cur_counts)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    return p, q


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, epsilon: float = PSI_EPSILON):
    """Population stability index sum((q - p) * ln(q / p)) over the last axis, where p and q
    are the bin shares of the reference and the current counts. Shares are floored at
    `epsilon` and renormalised first (see `PSI_EPSILON`). 0 for identical distributions."""
    p, q = _pair(ref_counts, cur_counts)
    p, q = np.maximum(p, epsilon), np.maximum(q, epsilon)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    return np.sum((q - p) * np.log(q / p), axis=-1)


def jensen_shannon(ref_counts: np.ndarray, cur_counts: np.ndarray):
    """Jensen-Shannon distance (the square root of the base-2 divergence, in [0, 1]) over
    the last axis. Needs no smoothing: an empty bin on one side contributes 0 to that side's
    term (0 * log 0 = 0), and the mixture is never empty where either side is not."""
    p, q = _pair(ref_counts, cur_counts)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    return np.sqrt(np.clip(0.5 * (kl_p + kl_q), 0.0, 1.0))


def profile_drift(
    profile: ReferenceProfile,
    current_counts: Mapping[str, np.ndarray],
    thresholds: HistogramDriftThresholds | None = None,
) -> DriftResult:
    """Drift of every profile column from its reference counts to `current_counts` (the
    merged histograms of a day, by column name): PSI for numeric features and the score,
    Jensen-Shannon distance for categorical features, each drifted at or above its
    threshold. A day without rows has no verdict (values NaN, nothing drifted)."""
    thresholds = thresholds or HistogramDriftThresholds()
    missing = [c.name for c in profile.columns if c.name not in current_counts]
    if missing:
        raise KeyError(f"no current histogram for columns {missing}")
    current = {c.name: np.asarray(current_counts[c.name], np.int64) for c in profile.columns}
    rows = {name: int(counts.sum()) for name, counts in current.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"current histograms count different rows per column: {rows}")
    current_rows = next(iter(rows.values()))
    reported = []
    for column in profile.columns:
        counts = current[column.name]
        if counts.shape != column.reference.shape:
            raise ValueError(
                f"column {column.name!r}: {counts.size} current counts, "
                f"the profile has {column.reference.size}"
            )
        if column.method == "psi":
            value, threshold = float(psi(column.reference, counts)), thresholds.psi
        else:
            value = float(jensen_shannon(column.reference, counts))
            threshold = thresholds.jensen_shannon
        if current_rows == 0 or profile.reference_rows == 0:
            value = float("nan")
        reported.append(
            ColumnDrift(column.name, column.method, value, threshold, bool(value >= threshold))
        )
    drifted = sum(c.drifted for c in reported)
    share = drifted / len(reported) if reported else 0.0
    return DriftResult(
        columns=tuple(reported),
        drifted_share=share,
        dataset_drift=bool(reported) and share >= thresholds.drift_share,
        reference_rows=profile.reference_rows,
        current_rows=current_rows,
    )


def column_profile(
    name: str,
    kind: str,
    edges: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[str] = (),
) -> ColumnProfile:
    """A column profile from the histogram kernel's row of counts (padded to the widest
    feature: trimmed here to the column's `len(edges) + 1` bins and its missing count)."""
    return ColumnProfile(name, kind, edges, trim_counts(reference, len(edges)), tuple(labels))


def trim_counts(row: np.ndarray, n_edges: int) -> np.ndarray:
    """A column's own counts out of a padded histogram row: its bins, then the missing count
    (the row's last entry). The padding between must be empty."""
    row = np.asarray(row, dtype=np.int64).ravel()
    if row.size < n_edges + 2:
        raise ValueError(f"a row of {row.size} counts cannot hold {n_edges + 1} bins + missing")
    if row[n_edges + 1 : -1].any():
        raise ValueError("counts in the padding beyond the column's bins")
    return np.concatenate([row[: n_edges + 1], row[-1:]])
