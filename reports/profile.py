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
    (their sampling noise shrinks with N; with k bins, PSI's is about
    (k - 1) * (1/N_ref + 1/N_cur)).

    `numeric`: the statistic of numeric features and the score: "wasserstein" (default) or
    "psi". The two are calibrated differently: a normed Wasserstein distance of 0.1 is a
    shift of the mean by 0.1 standard deviations, while PSI reaches 0.2 at a shift of about
    0.45 (PSI ~ d^2 for a normal shifted by d sd). Wasserstein at 0.1 is what Evidently's
    readable report (DataDriftPreset) tests numbers with, so both reports give one verdict.
    `wasserstein`: normed Wasserstein distance (Evidently's default threshold, 0.1).
    `psi`: population stability index; 0.1-0.2 is the usual "moderate shift" band, >= 0.2
    (default) a shift worth acting on.
    `jensen_shannon`: Jensen-Shannon distance (natural log, in [0, 0.833]) of categorical
    features; 0.1 is Evidently's default for the same test.
    `drift_share`: the share of drifted columns (features and score) at which the day has
    dataset drift (Evidently's `DataDriftPreset` default, 0.5).
    """

    numeric: str = "wasserstein"
    wasserstein: float = 0.1
    psi: float = 0.2
    jensen_shannon: float = 0.1
    drift_share: float = 0.5

    def __post_init__(self) -> None:
        if self.numeric not in ("wasserstein", "psi"):
            raise ValueError(f"numeric must be 'wasserstein' or 'psi', not {self.numeric!r}")
        if min(self.psi, self.wasserstein) <= 0 or not 0 < self.jensen_shannon <= 0.84:
            raise ValueError(f"thresholds out of range: {self}")
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share out of range: {self}")


@dataclass(frozen=True, eq=False)
class ColumnProfile:
    """One column of a reference profile: its bin edges and reference counts."""

    name: str
    kind: str  # NUMERIC, CATEGORICAL or SCORE
    edges: np.ndarray  # float32, ascending, distinct
    reference: np.ndarray  # int64, len(edges) + 2 (last: missing / unknown)
    labels: tuple[str, ...] = ()  # categorical: the vocabulary, code order
    low: float = float("nan")  # numeric, score: the smallest and largest finite value seen
    high: float = float("nan")
    scale: float = float("nan")  # numeric, score: the reference rows' standard deviation

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
        if self.kind != CATEGORICAL and not np.isfinite([self.low, self.high, self.scale]).all():
            raise ValueError(f"column {self.name!r}: a numeric column needs low, high, scale")
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
        mine, theirs = (self.low, self.high, self.scale), (other.low, other.high, other.scale)
        return (
            (self.name, self.kind, self.labels) == (other.name, other.kind, other.labels)
            and np.allclose(mine, theirs, rtol=0, atol=0, equal_nan=True)
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
        if self.kind == CATEGORICAL:
            return data | {"labels": list(self.labels)}
        return data | {"low": self.low, "high": self.high, "scale": self.scale}

    @classmethod
    def from_json(cls, data: Mapping) -> ColumnProfile:
        return cls(
            name=data["name"],
            kind=data["kind"],
            edges=np.asarray(data["edges"], dtype=np.float32),
            reference=np.asarray(data["reference"], dtype=np.int64),
            labels=tuple(data.get("labels", ())),
            low=float(data.get("low", "nan")),
            high=float(data.get("high", "nan")),
            scale=float(data.get("scale", "nan")),
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
    """Jensen-Shannon distance over the last axis: the square root of the divergence in
    natural-log units, in [0, sqrt(ln 2)] (scipy's `jensenshannon` default, the number
    Evidently reports as "jensenshannon"). Needs no smoothing: an empty bin on one side
    contributes 0 to that side's term (0 * log 0 = 0), and the mixture is never empty where
    either side is not."""
    p, q = _pair(ref_counts, cur_counts)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=-1)
    return np.sqrt(np.clip(0.5 * (kl_p + kl_q), 0.0, np.log(2.0)))


def wasserstein(
    ref_counts: np.ndarray,
    cur_counts: np.ndarray,
    edges: np.ndarray,
    low: float,
    high: float,
    scale: float,
) -> float:
    """First Wasserstein distance between two binned distributions of a numeric column,
    divided by `scale` (the reference's standard deviation: Evidently's normed Wasserstein).

    Bins are [low, e0), [e0, e1), ..., [e_last, high] (the last count, missing, is left out,
    as Evidently drops missing numbers); within a bin the mass is taken as uniform, so each
    CDF is piecewise linear and the area between them is exact for that model. A point mass
    in a bin of its own (`tasks.profiles.numeric_edges`) is exact; a shift inside a wide bin
    is underestimated, values outside [low, high] count as if at its ends."""
    p = _shares(np.asarray(ref_counts)[:-1])
    q = _shares(np.asarray(cur_counts)[:-1])
    if p.shape != q.shape or p.size != np.asarray(edges).size + 1:
        raise ValueError("counts do not fit the edges")
    inner = np.asarray(edges, np.float64)
    lo = min(float(low), inner[0]) if inner.size else float(low)
    hi = max(float(high), inner[-1]) if inner.size else float(high)
    bounds = np.concatenate([[lo], inner, [hi]])
    gap = np.concatenate([[0.0], np.cumsum(p - q)])  # F_ref - F_cur at each bound
    a, b, width = gap[:-1], gap[1:], np.diff(bounds)
    same_sign = a * b >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(
            np.abs(a) + np.abs(b) > 0, (a * a + b * b) / (2 * (np.abs(a) + np.abs(b))), 0.0
        )
    area = np.where(same_sign, 0.5 * (np.abs(a) + np.abs(b)), crossing) * width
    return float(area.sum() / max(float(scale), 1e-3))


def profile_drift(
    profile: ReferenceProfile,
    current_counts: Mapping[str, np.ndarray],
    thresholds: HistogramDriftThresholds | None = None,
) -> DriftResult:
    """Drift of every profile column from its reference counts to `current_counts` (the
    merged histograms of a day, by column name): for numeric features and the score the
    normed Wasserstein distance (or PSI, `thresholds.numeric`), for categorical features the
    Jensen-Shannon distance, each drifted at or above its threshold. A day without rows
    has no verdict (values NaN, nothing drifted)."""
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
        method, value, threshold = column_statistic(column, counts, thresholds)
        if current_rows == 0 or profile.reference_rows == 0:
            value = float("nan")
        reported.append(
            ColumnDrift(column.name, method, value, threshold, bool(value >= threshold))
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


def column_statistic(
    column: ColumnProfile, counts: np.ndarray, thresholds: HistogramDriftThresholds
) -> tuple[str, float, float]:
    """(method, value, threshold) of one column's drift from its reference to `counts`."""
    if column.kind == CATEGORICAL:
        value = float(jensen_shannon(column.reference, counts))
        return "jensenshannon", value, thresholds.jensen_shannon
    if thresholds.numeric == "psi":
        return "psi", float(psi(column.reference, counts)), thresholds.psi
    value = wasserstein(
        column.reference, counts, column.edges, column.low, column.high, column.scale
    )
    return "wasserstein", value, thresholds.wasserstein


def column_profile(
    name: str,
    kind: str,
    edges: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[str] = (),
    *,
    low: float = float("nan"),
    high: float = float("nan"),
    scale: float = float("nan"),
) -> ColumnProfile:
    """A column profile from the histogram kernel's row of counts (padded to the widest
    feature: trimmed here to the column's `len(edges) + 1` bins and its missing count)."""
    counts = trim_counts(reference, len(edges))
    return ColumnProfile(name, kind, edges, counts, tuple(labels), low, high, scale)


def trim_counts(row: np.ndarray, n_edges: int) -> np.ndarray:
    """A column's own counts out of a padded histogram row: its bins, then the missing count
    (the row's last entry). The padding between must be empty."""
    row = np.asarray(row, dtype=np.int64).ravel()
    if row.size < n_edges + 2:
        raise ValueError(f"a row of {row.size} counts cannot hold {n_edges + 1} bins + missing")
    if row[n_edges + 1 : -1].any():
        raise ValueError("counts in the padding beyond the column's bins")
    return np.concatenate([row[: n_edges + 1], row[-1:]])
