"""Full-data drift from the scoring pass: a model's reference profile built at training,
per-batch histograms of the scored rows (features and score, with the histogram kernel on the
scoring device), merged on the driver into one `histograms` slice per (ds, model version)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from kernels.histogram import category_edges, histogram, quantile_edges
from reports.profile import (
    CATEGORICAL,
    NUMERIC,
    SCORE,
    SCORE_COLUMN,
    ReferenceProfile,
    column_profile,
    trim_counts,
)
from tasks import step
from tasks.features import FeatureSpec
from tasks.lake import Lake

FEATURE_BINS = 10
"""Quantile bins per numeric feature (deciles: the usual PSI binning; ties merge bins)."""
TAIL_QUANTILES = (0.001, 0.01, 0.05, 0.95, 0.99, 0.999)
"""Extra edges in the tails: the outer deciles span the extremes, and a binned Wasserstein
distance (mass uniform within a bin) overestimated a shift by 35% with deciles alone on a
normal sample, by < 2% with these edges added."""
SCORE_BINS = 20
"""Quantile bins of the holdout scores: equal reference mass per bin keeps every PSI term
well conditioned, and 20 resolve the tails where a classifier's scores pile up."""

HISTOGRAMS_SCHEMA = pa.schema(
    [
        ("ds", pa.string()),
        ("model_version", pa.string()),
        ("column", pa.string()),
        ("counts", pa.list_(pa.int64())),
        ("rows", pa.int64()),
        ("_run_id", pa.string()),
    ]
)


def numeric_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin edges of one numeric column: quantile edges (`kernels.histogram.quantile_edges`)
    plus the `TAIL_QUANTILES`, except that a value holding at least 1/n_bins of the finite
    values (a point mass: the zeros of a capital gain, a common integer, the floor of a
    classifier's scores) gets a bin of its own, and the other values their own quantile
    edges. Plain quantiles would merge
    a point mass with its neighbours (capital gain: one edge at 0, the whole tail in one bin)
    and leave no resolution where shifts happen."""
    col = np.asarray(values, np.float32).ravel()
    col = col[np.isfinite(col)]
    if col.size == 0:
        return np.empty(0, np.float32)
    distinct, counts = np.unique(col, return_counts=True)
    heavy = distinct[counts >= col.size / n_bins]
    rest = col[~np.isin(col, heavy)]
    parts = [heavy, np.nextafter(heavy, np.float32(np.inf))]
    if rest.size:
        parts += quantile_edges(rest.reshape(-1, 1), n_bins)
        tails = np.quantile(rest.astype(np.float64), TAIL_QUANTILES, method="linear")
        parts.append(tails.astype(np.float32))
    return np.unique(np.concatenate(parts).astype(np.float32))


def score_edges(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin edges of the score: `numeric_edges` of the holdout scores, each moved to the
    midpoint between the distinct holdout scores on either side of it. A tree ensemble
    gives many rows the very same score, and the scoring pass computes it with another
    implementation (our forest kernel, CPU or GPU: equal within float32 rounding, not
    bit-identical to XGBoost's predict): an edge on such a score would send a point mass to
    one bin in the reference and to its neighbour on scoring days."""
    values = np.asarray(scores, np.float32).ravel()
    edges = numeric_edges(values, n_bins)
    distinct = np.unique(values[np.isfinite(values)]).astype(np.float64)
    if edges.size == 0 or distinct.size < 2:
        return edges
    above = np.clip(np.searchsorted(distinct, edges, side="left"), 1, distinct.size - 1)
    middle = 0.5 * (distinct[above - 1] + distinct[above])
    return np.unique(middle.astype(np.float32))


def build_profile(
    spec: FeatureSpec,
    train_X: np.ndarray,
    holdout_X: np.ndarray,
    holdout_scores: np.ndarray,
    *,
    feature_bins: int = FEATURE_BINS,
    score_bins: int = SCORE_BINS,
) -> ReferenceProfile:
    """The reference profile of a model whose input matrix is laid out by `spec`: numeric
    edges from the quantiles of the training rows `train_X` (`numeric_edges`), a bin per
    vocabulary code for categoricals, score edges from the quantiles of the holdout scores
    (`score_edges`); reference counts from the out-of-sample holdout rows `holdout_X` and
    their scores."""
    n_numeric = len(spec.numeric)
    if train_X.shape[1] != len(spec.names) or holdout_X.shape[1] != len(spec.names):
        raise ValueError(f"feature matrices must have the spec's {len(spec.names)} columns")
    edges = [numeric_edges(train_X[:, j], feature_bins) for j in range(n_numeric)]
    edges += [category_edges(len(spec.vocabulary[name])) for name in spec.categorical]
    scores = np.asarray(holdout_scores, np.float32).reshape(-1, 1)
    edges_of_score = score_edges(scores, score_bins)
    counts = histogram(holdout_X, edges, device="cpu")
    score_counts = histogram(scores, [edges_of_score], device="cpu")
    columns = [
        column_profile(
            name, NUMERIC, edges[j], counts[j], **_spread(train_X[:, j], holdout_X[:, j])
        )
        for j, name in enumerate(spec.numeric)
    ]
    columns += [
        column_profile(
            name, CATEGORICAL, edges[n_numeric + j], counts[n_numeric + j], spec.vocabulary[name]
        )
        for j, name in enumerate(spec.categorical)
    ]
    columns.append(
        column_profile(
            SCORE_COLUMN, SCORE, edges_of_score, score_counts[0], **_spread(scores, scores)
        )
    )
    return ReferenceProfile(tuple(columns), reference_rows=len(holdout_X))


def _spread(train: np.ndarray, holdout: np.ndarray) -> dict[str, float]:
    """The range of a numeric column's finite training values (the outer bins' ends) and the
    standard deviation of its finite holdout values (the scale of normed Wasserstein)."""
    train = np.asarray(train, np.float64).ravel()
    holdout = np.asarray(holdout, np.float64).ravel()
    train, holdout = train[np.isfinite(train)], holdout[np.isfinite(holdout)]
    if train.size == 0:
        return {"low": 0.0, "high": 0.0, "scale": 0.0}
    spread = float(holdout.std()) if holdout.size else 0.0
    return {"low": float(train.min()), "high": float(train.max()), "scale": spread}


def check_profile_matches(profile: ReferenceProfile, spec: FeatureSpec) -> None:
    if profile.feature_names != spec.names:
        raise ValueError(
            f"the profile's features {profile.feature_names} are not the model's {spec.names}"
        )


@dataclass
class HistogramPass:
    """Histograms of one model's scored rows, accumulated batch by batch: its feature
    matrix (the one it predicts on, on the same device) and its scores."""

    profile: ReferenceProfile
    features: np.ndarray | None = None
    scores: np.ndarray | None = None
    rows: int = 0
    _edges: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._edges = self.profile.feature_edges()

    def measure(self, X: Any, probability: Any, device: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Counts of one batch (nothing is added until `add`, so a batch that fails after
        this, or is retried smaller, is never counted twice)."""
        features = histogram(X, self._edges, device=device)
        scores = histogram(probability.reshape(-1, 1), [self.profile.score.edges], device=device)
        return features, scores, int(X.shape[0])

    def add(self, measured: tuple[np.ndarray, np.ndarray, int]) -> None:
        features, scores, rows = measured
        self.features = features if self.features is None else self.features + features
        self.scores = scores if self.scores is None else self.scores + scores
        self.rows += rows

    def result(self) -> dict[str, np.ndarray]:
        """Counts per profile column, each trimmed to the column's bins + missing."""
        if self.features is None:
            return empty_histograms(self.profile)
        out = {
            column.name: trim_counts(self.features[j], column.edges.size)
            for j, column in enumerate(self.profile.features)
        }
        out[SCORE_COLUMN] = trim_counts(self.scores[0], self.profile.score.edges.size)
        return out


def empty_histograms(profile: ReferenceProfile) -> dict[str, np.ndarray]:
    return {c.name: np.zeros(c.n_counts, np.int64) for c in profile.columns}


def merge_histograms(
    profile: ReferenceProfile, shards: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The sum of the shards' histograms per profile column (shapes checked)."""
    merged = empty_histograms(profile)
    for shard in shards:
        for name, total in merged.items():
            counts = np.asarray(shard[name], np.int64)
            if counts.shape != total.shape:
                raise ValueError(f"column {name!r}: shard counts of shape {counts.shape}")
            total += counts
    return merged


def histograms_table(
    ds: str, model_version: str, counts: Mapping[str, np.ndarray], run_id: str
) -> pa.Table:
    names = list(counts)
    return pa.Table.from_pydict(
        {
            "ds": [ds] * len(names),
            "model_version": [model_version] * len(names),
            "column": names,
            "counts": [np.asarray(counts[n], np.int64).tolist() for n in names],
            "rows": [int(np.sum(counts[n])) for n in names],
            "_run_id": [run_id] * len(names),
        },
        schema=HISTOGRAMS_SCHEMA,
    )


def write_day_histograms(
    lake: Lake,
    dataset: str,
    ds: str,
    model_version: str,
    counts: Mapping[str, np.ndarray],
    run_id: str,
) -> int:
    """Replace the (ds, model version) slice of the dataset's `histograms` table by `counts`
    in one commit. Returns the table version holding it."""
    return lake.replace_slice(
        "histograms",
        dataset,
        histograms_table(ds, model_version, counts, run_id),
        {"ds": ds, "model_version": model_version},
        run_id=run_id,
        partition_by=("ds", "model_version"),
    )


@step(retries=2)
def load_day_histograms(
    lake: Lake, dataset: str, ds: str, model_version: str
) -> dict[str, np.ndarray] | None:
    """The merged histograms (int64 counts by column, last count = missing) of every row of
    day `ds` scored by `model_version`, or None when that day has none (model without a
    profile, day not scored yet)."""
    table = lake.read("histograms", dataset, where={"ds": ds, "model_version": model_version})
    if table.num_rows == 0:
        return None
    columns = table.column("column").to_pylist()
    counts = table.column("counts").to_pylist()
    return {name: np.asarray(c, dtype=np.int64) for name, c in zip(columns, counts, strict=True)}
