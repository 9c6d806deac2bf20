"""Bias and fairness of a scored day: per-group metrics and disparities with bootstrap CIs.

Groupings are every protected attribute alone and every intersection of two. Point estimates
come from fairlearn's `MetricFrame` (its grouping and its `difference()`/`ratio()`, which is
how fairlearn defines `demographic_parity_difference/ratio` and `equalized_odds_difference`).
MetricFrame is given the day reduced to counts: one row per (group, label, decision) cell
weighted by its number of rows, the same values as the row-level call (tested) at a cost
independent of N: on rows, fairlearn 0.15's MetricFrame spends about 10 µs of CPU per row
per metric (it passes columns through Python lists). On those few weighted cells a rate is a
weighted share (`_rate`): the values of fairlearn's `selection_rate`, `true_positive_rate`,
`false_positive_rate` and scikit-learn's `precision_score` (tested on the raw rows), without
their input validation, which cost about 5 ms a group and metric, some 3 s a day. AUC is the
Mann–Whitney statistic of midranks, every group of a grouping in one sort (scikit-learn's
`roc_auc_score` per group, tested).

Suppression: a group with fewer than `min_group_size` rows is suppressed (kept and marked,
every metric None, excluded from the disparities). In a reported group, a rate is withheld
(listed in `suppressed_metrics`) when its denominator has fewer than `min_group_size` rows:
TPR needs that many labelled positives, FPR that many labelled negatives, precision that many
labelled selected rows, AUC both TPR's and FPR's. Equalized odds compares only the groups
with both TPR and FPR reported.

Bootstrap: the row bootstrap of the day, drawn exactly as multinomial counts over the cells
(seeded per grouping from `policy.seed`), on all rows. Per-group rates get percentile
intervals; disparities (max−min and min÷max over groups) get basic intervals
(2·estimate − upper quantile, 2·estimate − lower quantile), because percentile intervals of a
range statistic are biased away from parity when many small groups are compared: with 30
equal groups of 120 rows the estimate itself exceeds a 0.1 difference on most days (tested),
as does the percentile lower bound (simulated), while the basic one does not (tested). Where all
replicates lie beyond the estimate (near parity) the interval is widened to contain it.
"""

from __future__ import annotations

import math
import threading
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from itertools import combinations
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from fairlearn.metrics import MetricFrame

MISSING_GROUP = "(missing)"
"""The group value of rows whose protected attribute is null."""

JSON_FORMAT = "tidewater.fairness/1"
SEPARATOR = " × "
"""Joins attribute names (the metrics row's `column`) and group values (its `group`)."""

DEMOGRAPHIC_PARITY_DIFFERENCE = "demographic_parity_difference"
DEMOGRAPHIC_PARITY_RATIO = "demographic_parity_ratio"
EQUALIZED_ODDS_DIFFERENCE = "equalized_odds_difference"
LABEL_METRICS = ("tpr", "fpr", "precision", "auc")

# Cell layout of the per-grouping count array: [group, label state, decision].
_UNLABELLED, _NEGATIVE, _POSITIVE = 0, 1, 2


@dataclass(frozen=True)
class FairnessPolicy:
    """How groups are formed, suppressed and judged.

    `breach_on="ci"` (default): a disparity breaches when its estimate is beyond the threshold
    and so is its whole confidence interval (the bound nearest parity), so that noise in small
    intersections does not breach; `"estimate"`: the estimate alone. Without a bootstrap
    (`n_boot=0`) the estimate alone decides. Every number uses all rows.
    `regression_tolerance`: see `regressions`.
    """

    min_group_size: int = 100
    threshold: float = 0.5
    dp_ratio_min: float = 0.8
    dp_difference_max: float = 0.1
    eo_difference_max: float = 0.1
    n_boot: int = 200
    ci: tuple[float, float] = (0.025, 0.975)
    seed: int = 0
    breach_on: Literal["ci", "estimate"] = "ci"
    regression_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.min_group_size < 1:
            raise ValueError("min_group_size must be at least 1")
        if self.n_boot < 0:
            raise ValueError("n_boot must be 0 (no intervals) or positive")
        low, high = self.ci
        if not 0 < low < high < 1:
            raise ValueError(f"ci must be two quantiles with 0 < low < high < 1, got {self.ci}")
        object.__setattr__(self, "ci", (float(low), float(high)))  # a list from config
        if self.breach_on not in ("ci", "estimate"):
            raise ValueError(f"breach_on must be 'ci' or 'estimate', got {self.breach_on!r}")


Interval = tuple[float, float]


@dataclass(frozen=True)
class GroupMetrics:
    """One group of one grouping (an attribute, or an intersection of two).

    `size` counts all rows, `labelled` those with a known label. Rates are None where
    suppressed, undefined or (label metrics) where the day has no labels; `*_ci` are
    percentile bootstrap intervals of the reported rates.
    """

    attributes: tuple[str, ...]
    group: tuple[str, ...]
    size: int
    labelled: int
    positives: int
    negatives: int
    labelled_selected: int
    selection_rate: float | None
    tpr: float | None = None
    fpr: float | None = None
    precision: float | None = None
    auc: float | None = None
    suppressed: bool = False
    suppressed_metrics: tuple[str, ...] = ()
    selection_rate_ci: Interval | None = None
    tpr_ci: Interval | None = None
    fpr_ci: Interval | None = None
    precision_ci: Interval | None = None

    @property
    def column(self) -> str:
        return SEPARATOR.join(self.attributes)

    @property
    def label(self) -> str:
        return SEPARATOR.join(self.group)


@dataclass(frozen=True)
class Disparity:
    """A disparity over the reported groups of one grouping.

    `basis` is the per-group rate whose spread gives the value (`selection_rate`, or for
    equalized odds whichever of `tpr`/`fpr` spreads more); `low_group`/`high_group` hold its
    lowest and highest rate. `value` is None (with a `note`) when fewer than two groups
    qualify. `excluded` lists the groups left out as suppressed.
    """

    metric: str
    attributes: tuple[str, ...]
    value: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float
    breached: bool
    compared: int
    excluded: tuple[tuple[str, ...], ...] = ()
    basis: str = "selection_rate"
    low_group: tuple[str, ...] | None = None
    high_group: tuple[str, ...] | None = None
    note: str | None = None

    @property
    def column(self) -> str:
        return SEPARATOR.join(self.attributes)

    @property
    def upper_bound(self) -> bool:
        """True when the threshold is a maximum (differences), False for a minimum (ratio)."""
        return self.metric != DEMOGRAPHIC_PARITY_RATIO


@dataclass(frozen=True)
class FairnessResult:
    """Per-group metrics and disparities of every grouping of a scored day."""

    groups: tuple[GroupMetrics, ...]
    disparities: tuple[Disparity, ...]
    labels_present: bool
    rows: int
    policy: FairnessPolicy
    labelled_rows: int = 0
    protected: tuple[str, ...] = ()
    groupings: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def breaches(self) -> tuple[Disparity, ...]:
        """The disparities that breach their threshold."""
        return tuple(d for d in self.disparities if d.breached)

    def group(self, attributes: Sequence[str], group: Sequence[str]) -> GroupMetrics:
        """The metrics of `group` in grouping `attributes`; KeyError if absent."""
        key = (tuple(attributes), tuple(group))
        for g in self.groups:
            if (g.attributes, g.group) == key:
                return g
        raise KeyError(f"no group {key[1]!r} in grouping {key[0]!r}")

    def disparity(self, metric: str, attributes: Sequence[str]) -> Disparity:
        """The disparity `metric` of grouping `attributes`; KeyError if not computed."""
        for d in self.disparities:
            if d.metric == metric and d.attributes == tuple(attributes):
                return d
        raise KeyError(f"no {metric} for grouping {tuple(attributes)!r}")

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON types (lists, not tuples; None where undefined)."""
        return _plain(
            {
                "format": JSON_FORMAT,
                "protected": self.protected,
                "groupings": self.groupings,
                "rows": self.rows,
                "labelled_rows": self.labelled_rows,
                "labels_present": self.labels_present,
                "policy": asdict(self.policy),
                "groups": [asdict(g) for g in self.groups],
                "disparities": [asdict(d) for d in self.disparities],
                "breaches": len(self.breaches),
            }
        )


def assess_fairness(
    frame: pd.DataFrame,
    protected: Sequence[str],
    policy: FairnessPolicy = FairnessPolicy(),  # noqa: B008 (frozen, so a safe default)
    score_column: str = "score",
    label_column: str = "label",
) -> FairnessResult:
    """Fairness of `frame`'s scores over `protected` attributes and their pairwise intersections.

    A row is selected when its score is ≥ `policy.threshold`. Labels are 1.0/0.0, NaN where
    unknown; a missing label column means no labels. Rows without a score are not counted.
    Null protected values form their own group, `(missing)`.
    """
    protected = tuple(protected)
    if len(set(protected)) != len(protected):
        raise ValueError(f"protected attributes repeat: {protected}")
    missing = [c for c in (*protected, score_column) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {missing}")

    score = pd.to_numeric(frame[score_column], errors="coerce").to_numpy(dtype="float64")
    scored = ~np.isnan(score)
    score = score[scored]
    decision = (score >= policy.threshold).astype(np.int8)
    label_state = _label_state(frame, label_column, scored)
    labelled_rows = int((label_state != _UNLABELLED).sum())
    labels_present = labelled_rows > 0

    codes: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    for name in protected:
        codes[name], values[name] = _factorize(frame[name] if scored.all() else frame[name][scored])

    labelled = np.flatnonzero(label_state != _UNLABELLED)
    by_score = labelled[np.argsort(score[labelled], kind="stable")]  # once for every grouping
    groupings = [(a,) for a in protected] + list(combinations(protected, 2))
    groups: list[GroupMetrics] = []
    disparities: list[Disparity] = []

    def assess(attributes: tuple[str, ...]) -> tuple[list[GroupMetrics], list[Disparity]]:
        return _assess_grouping(
            attributes, codes, values, decision, label_state, score, by_score, policy
        )

    # numpy's sorts and gathers release the GIL: groupings side by side on two threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        for g, d in pool.map(assess, groupings):
            groups.extend(g)
            disparities.extend(d)

    return FairnessResult(
        groups=tuple(groups),
        disparities=tuple(disparities),
        labels_present=labels_present,
        rows=int(scored.sum()),
        policy=policy,
        labelled_rows=labelled_rows,
        protected=protected,
        groupings=tuple(groupings),
    )


def fairness_metric_rows(
    dataset: str, ds: date | str, model_version: str, result: FairnessResult
) -> list[dict[str, Any]]:
    """The result as rows of the long-format `lake/metrics` table (`METRIC_KEYS`).

    Metrics are named `fairness:<name>`; `column` is the grouping (`sex × race`), `group` the
    group (`Female × Black`, None for disparities). Per-group rows and CI bounds carry no
    threshold and `breached=False`: only a disparity's own row carries its decision. A
    suppressed group has one `fairness:suppressed` row (value: its size); a withheld rate a
    `fairness:<rate>:suppressed` row (value: its denominator). Undefined values have no row.
    """
    day = ds.isoformat() if isinstance(ds, date) else str(ds)

    def row(
        metric: str,
        column: str,
        group: str | None,
        value: float,
        threshold: float | None = None,
        breached: bool = False,
    ) -> dict[str, Any]:
        return {
            "dataset": dataset,
            "ds": day,
            "model_version": model_version,
            "metric": f"fairness:{metric}",
            "column": column,
            "group": group,
            "value": float(value),
            "threshold": None if threshold is None else float(threshold),
            "breached": bool(breached),
        }

    rows: list[dict[str, Any]] = []
    for g in result.groups:
        column, label = g.column, g.label
        if g.suppressed:
            rows.append(row("suppressed", column, label, g.size))
            continue
        rows.append(row("size", column, label, g.size))
        if result.labels_present:
            rows.append(row("labelled", column, label, g.labelled))
        for name in ("selection_rate", *LABEL_METRICS):
            value = getattr(g, name)
            if value is not None:
                rows.append(row(name, column, label, value))
            ci = getattr(g, f"{name}_ci", None)
            if ci is not None:
                rows.append(row(f"{name}:ci_low", column, label, ci[0]))
                rows.append(row(f"{name}:ci_high", column, label, ci[1]))
        for name in g.suppressed_metrics:
            rows.append(row(f"{name}:suppressed", column, label, _denominator(g, name)))
    for d in result.disparities:
        if d.value is None:
            continue
        rows.append(row(d.metric, d.column, None, d.value, d.threshold, d.breached))
        if d.ci_low is not None and d.ci_high is not None:
            rows.append(row(f"{d.metric}:ci_low", d.column, None, d.ci_low))
            rows.append(row(f"{d.metric}:ci_high", d.column, None, d.ci_high))
    return rows


def _assess_grouping(
    attributes: tuple[str, ...],
    codes: dict[str, np.ndarray],
    values: dict[str, np.ndarray],
    decision: np.ndarray,
    label_state: np.ndarray,
    score: np.ndarray,
    by_score: np.ndarray,
    policy: FairnessPolicy,
) -> tuple[list[GroupMetrics], list[Disparity]]:
    """The groups of `attributes` and their disparities (`by_score`: the labelled rows in
    the order of their scores)."""
    labels_present = len(by_score) > 0
    # One integer per row for the grouping, then counts per (group, label state, decision).
    code = np.zeros(len(decision), dtype=np.int64)
    shape = tuple(len(values[a]) for a in attributes)
    for a in attributes:
        code = code * len(values[a]) + codes[a]
    n_codes = math.prod(shape)
    if n_codes <= 1 << 16:
        present = np.flatnonzero(np.bincount(code, minlength=n_codes))
        position = np.zeros(n_codes, dtype=np.int32)
        position[present] = np.arange(len(present))
        group_index = position[code]
    else:  # two high-cardinality attributes: no dense table of every combination
        present, group_index = np.unique(code, return_inverse=True)
    counts = np.bincount(
        group_index * 6 + label_state * 2 + decision, minlength=len(present) * 6
    ).reshape(len(present), 3, 2)
    keys = [
        tuple(
            str(values[a][i]) for a, i in zip(attributes, np.unravel_index(p, shape), strict=True)
        )
        for p in present
    ]

    n = policy.min_group_size
    size = counts.sum(axis=(1, 2))
    positives = counts[:, _POSITIVE].sum(axis=1)
    negatives = counts[:, _NEGATIVE].sum(axis=1)
    selected_labelled = counts[:, _NEGATIVE:, 1].sum(axis=1)
    reported = size >= n
    show = {
        "tpr": reported & (positives >= n),
        "fpr": reported & (negatives >= n),
        "precision": reported & (selected_labelled >= n),
    }
    show["auc"] = show["tpr"] & show["fpr"]

    rates, estimates = _fairlearn_estimates(counts, reported, show, labels_present)
    boot = _bootstrap(attributes, counts, policy)
    auc = _auc_by_group(group_index, label_state, score, by_score, show["auc"])

    groups = []
    for i, key in enumerate(keys):
        if not reported[i]:
            groups.append(
                GroupMetrics(
                    attributes=attributes,
                    group=key,
                    size=int(size[i]),
                    labelled=int(positives[i] + negatives[i]),
                    positives=int(positives[i]),
                    negatives=int(negatives[i]),
                    labelled_selected=int(selected_labelled[i]),
                    selection_rate=None,
                    suppressed=True,
                )
            )
            continue
        label_values: dict[str, Any] = {}
        withheld = []
        for name in LABEL_METRICS:
            if not labels_present:
                label_values[name] = None
            elif not show[name][i]:
                label_values[name] = None
                withheld.append(name)
            else:
                label_values[name] = auc.get(i) if name == "auc" else rates[name].get(i)
        groups.append(
            GroupMetrics(
                attributes=attributes,
                group=key,
                size=int(size[i]),
                labelled=int(positives[i] + negatives[i]),
                positives=int(positives[i]),
                negatives=int(negatives[i]),
                labelled_selected=int(selected_labelled[i]),
                selection_rate=rates["selection_rate"].get(i),
                **label_values,
                suppressed_metrics=tuple(withheld),
                **{
                    f"{name}_ci": _interval(boot, name, i, value is not None, policy.ci)
                    for name, value in (
                        ("selection_rate", rates["selection_rate"].get(i)),
                        ("tpr", label_values["tpr"]),
                        ("fpr", label_values["fpr"]),
                        ("precision", label_values["precision"]),
                    )
                },
            )
        )

    disparities = _demographic_parity(attributes, keys, reported, rates, estimates, boot, policy)
    if labels_present:
        disparities.append(_equalized_odds(attributes, keys, show, rates, estimates, boot, policy))
    return groups, disparities


def _fairlearn_estimates(
    counts: np.ndarray, reported: np.ndarray, show: dict[str, np.ndarray], labels_present: bool
) -> tuple[dict[str, dict[int, float | None]], dict[str, float | None]]:
    """Per-group rates and the disparities, from fairlearn's MetricFrame on the counts.

    fairlearn's `demographic_parity_difference`/`_ratio` are `difference()`/`ratio()` of a
    selection-rate MetricFrame, and `equalized_odds_difference` is the larger `difference()`
    of a TPR/FPR MetricFrame: taken here from the frames that also give the per-group rates
    (tests check them against the functions on the raw rows).
    """
    rates: dict[str, dict[int, float | None]] = {name: {} for name in _RATE_METRICS}
    disparities: dict[str, float | None] = {}
    index = np.flatnonzero(reported)
    if len(index):
        frame = _metric_frame(counts, index, {"selection_rate": _selection_rate}, labelled=False)
        rates["selection_rate"] = _by_group(frame, "selection_rate")
        if len(index) >= 2:
            disparities[DEMOGRAPHIC_PARITY_DIFFERENCE] = _finite(
                frame.difference()["selection_rate"]
            )
            disparities[DEMOGRAPHIC_PARITY_RATIO] = _finite(frame.ratio()["selection_rate"])
    if not labels_present:
        return rates, disparities
    index = np.flatnonzero(show["tpr"] | show["fpr"] | show["precision"])
    if len(index) == 0:
        return rates, disparities
    frame = _metric_frame(counts, index, _LABEL_RATE_METRICS, labelled=True)
    for name in _LABEL_RATE_METRICS:
        rates[name] = _by_group(frame, name)
    eligible = np.flatnonzero(show["tpr"] & show["fpr"])
    if len(eligible) >= 2:
        if not np.array_equal(eligible, index):
            odds = {name: _LABEL_RATE_METRICS[name] for name in ("tpr", "fpr")}
            frame = _metric_frame(counts, eligible, odds, labelled=True)
        difference = frame.difference()
        disparities[EQUALIZED_ODDS_DIFFERENCE] = _finite(max(difference["tpr"], difference["fpr"]))
    return rates, disparities


_RATE_METRICS = ("selection_rate", "tpr", "fpr", "precision")


def _rate(hit: np.ndarray, of: np.ndarray, sample_weight: np.ndarray) -> float:
    """The weighted share of the rows `of` that `hit`; NaN where no row is `of`."""
    total = sample_weight[of].sum()
    return float(sample_weight[hit & of].sum() / total) if total else np.nan


def _selection_rate(y_true, y_pred, sample_weight) -> float:
    y_pred = np.asarray(y_pred)
    return _rate(y_pred == 1, np.ones(len(y_pred), dtype=bool), np.asarray(sample_weight))


def _true_positive_rate(y_true, y_pred, sample_weight) -> float:
    return _rate(np.asarray(y_pred) == 1, np.asarray(y_true) == 1, np.asarray(sample_weight))


def _false_positive_rate(y_true, y_pred, sample_weight) -> float:
    return _rate(np.asarray(y_pred) == 1, np.asarray(y_true) == 0, np.asarray(sample_weight))


def _precision(y_true, y_pred, sample_weight) -> float:
    return _rate(np.asarray(y_true) == 1, np.asarray(y_pred) == 1, np.asarray(sample_weight))


_LABEL_RATE_METRICS = {
    "tpr": _true_positive_rate,
    "fpr": _false_positive_rate,
    "precision": _precision,
}


_WARNING_FILTERS = threading.Lock()


def _metric_frame(
    counts: np.ndarray, index: np.ndarray, metrics: dict[str, Any], *, labelled: bool
) -> MetricFrame:
    from fairlearn.metrics import MetricFrame  # with scikit-learn: seconds to import

    table = _cells(counts, index, labelled=labelled)
    weights = {"sample_weight": table["weight"].to_numpy()}
    # the warning filters are the process's: one thread at a time may swap them
    with _WARNING_FILTERS, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns of one-class groups: those are withheld
        return MetricFrame(
            metrics=metrics,
            y_true=(table["label"] if labelled else table["decision"]).to_numpy(),
            y_pred=table["decision"].to_numpy(),
            sensitive_features=table["group"],
            sample_params={name: weights for name in metrics},
        )


def _by_group(frame: MetricFrame, name: str) -> dict[int, float | None]:
    return {int(i): _finite(v) for i, v in frame.by_group[name].items()}


def _cells(counts: np.ndarray, index: np.ndarray, *, labelled: bool) -> pd.DataFrame:
    """The non-empty cells of groups `index` as rows: group (position), label, decision, weight.

    Without `labelled`, label states are pooled (all rows count towards selection).
    """
    if labelled:
        sub = counts[index, _NEGATIVE:, :]  # [group, label 0/1, decision]
        g, lab, dec = np.meshgrid(index, [0, 1], [0, 1], indexing="ij")
    else:
        sub = counts[index].sum(axis=1)[:, None, :]
        g, lab, dec = np.meshgrid(index, [0], [0, 1], indexing="ij")
    weight = sub.ravel().astype("float64")
    keep = weight > 0
    return pd.DataFrame(
        {
            "group": g.ravel()[keep],
            "label": lab.ravel()[keep],
            "decision": dec.ravel()[keep],
            "weight": weight[keep],
        }
    )


def _demographic_parity(
    attributes: tuple[str, ...],
    keys: list[tuple[str, ...]],
    reported: np.ndarray,
    rates: dict[str, dict[int, float | None]],
    estimates: dict[str, float | None],
    boot: dict[str, np.ndarray] | None,
    policy: FairnessPolicy,
) -> list[Disparity]:
    index = np.flatnonzero(reported)
    excluded = tuple(keys[i] for i in np.flatnonzero(~reported))
    specs = (
        (DEMOGRAPHIC_PARITY_DIFFERENCE, policy.dp_difference_max),
        (DEMOGRAPHIC_PARITY_RATIO, policy.dp_ratio_min),
    )
    if len(index) < 2:
        note = f"fewer than two groups of at least {policy.min_group_size} rows"
        return [
            Disparity(
                metric,
                attributes,
                None,
                None,
                None,
                threshold,
                False,
                len(index),
                excluded,
                note=note,
            )  # fmt: skip
            for metric, threshold in specs
        ]
    low, high = _extremes(rates["selection_rate"], index)
    out = []
    for metric, threshold in specs:
        replicates = None
        if boot is not None:
            sel = boot["selection_rate"][:, index]
            top, bottom = np.nanmax(sel, axis=1), np.nanmin(sel, axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                difference = metric == DEMOGRAPHIC_PARITY_DIFFERENCE
                replicates = top - bottom if difference else bottom / top
        out.append(
            _disparity(
                metric,
                attributes,
                estimates.get(metric),
                replicates,
                threshold,
                len(index),
                excluded,
                "selection_rate",
                keys[low],
                keys[high],
                policy,
            )  # fmt: skip
        )
    return out


def _equalized_odds(
    attributes: tuple[str, ...],
    keys: list[tuple[str, ...]],
    show: dict[str, np.ndarray],
    rates: dict[str, dict[int, float | None]],
    estimates: dict[str, float | None],
    boot: dict[str, np.ndarray] | None,
    policy: FairnessPolicy,
) -> Disparity:
    eligible = show["tpr"] & show["fpr"]
    index = np.flatnonzero(eligible)
    excluded = tuple(keys[i] for i in np.flatnonzero(~eligible))
    threshold = policy.eo_difference_max
    if len(index) < 2:
        note = (
            f"fewer than two groups with at least {policy.min_group_size} labelled positives "
            "and negatives"
        )
        return Disparity(EQUALIZED_ODDS_DIFFERENCE, attributes, None, None, None, threshold,
                         False, len(index), excluded, basis="tpr", note=note)  # fmt: skip
    spreads = {}
    for name in ("tpr", "fpr"):
        low, high = _extremes(rates[name], index)
        spreads[name] = ((rates[name][high] or 0.0) - (rates[name][low] or 0.0), low, high)
    basis = max(spreads, key=lambda k: spreads[k][0])
    _, low, high = spreads[basis]
    replicates = None
    if boot is not None:
        tpr, fpr = boot["tpr"][:, index], boot["fpr"][:, index]
        replicates = np.maximum(
            np.nanmax(tpr, axis=1) - np.nanmin(tpr, axis=1),
            np.nanmax(fpr, axis=1) - np.nanmin(fpr, axis=1),
        )
    return _disparity(EQUALIZED_ODDS_DIFFERENCE, attributes,
                      estimates.get(EQUALIZED_ODDS_DIFFERENCE), replicates, threshold,
                      len(index), excluded, basis, keys[low], keys[high], policy)  # fmt: skip


def _extremes(rate: dict[int, float | None], index: np.ndarray) -> tuple[int, int]:
    """Positions (into the grouping's groups) of the lowest and highest rate among `index`."""
    values = np.array([np.nan if rate.get(i) is None else rate[i] for i in index])
    return int(index[np.nanargmin(values)]), int(index[np.nanargmax(values)])


def _disparity(
    metric: str,
    attributes: tuple[str, ...],
    value: float | None,
    replicates: np.ndarray | None,
    threshold: float,
    compared: int,
    excluded: tuple[tuple[str, ...], ...],
    basis: str,
    low: tuple[str, ...],
    high: tuple[str, ...],
    policy: FairnessPolicy,
) -> Disparity:
    ci_low = ci_high = None
    if value is not None and replicates is not None and np.isfinite(replicates).any():
        q_low, q_high = np.nanquantile(replicates, policy.ci)
        # Basic bootstrap interval: a range statistic's replicates sit further from parity than
        # its estimate does, so the percentile interval would be biased (see module docstring).
        # Near parity every replicate can sit beyond the estimate; the interval is then
        # widened to reach the estimate (never narrowed).
        ci_low = float(np.clip(min(2 * value - q_high, value), 0.0, 1.0))
        ci_high = float(np.clip(max(2 * value - q_low, value), 0.0, 1.0))
    upper = metric != DEMOGRAPHIC_PARITY_RATIO
    breached = False
    if value is not None:
        breached = value > threshold if upper else value < threshold
        if breached and policy.breach_on == "ci" and ci_low is not None:
            breached = ci_low > threshold if upper else ci_high < threshold
    return Disparity(
        metric=metric,
        attributes=attributes,
        value=value,
        ci_low=ci_low,
        ci_high=ci_high,
        threshold=float(threshold),
        breached=bool(breached),
        compared=compared,
        excluded=excluded,
        basis=basis,
        low_group=low,
        high_group=high,
    )


def _bootstrap(
    attributes: tuple[str, ...], counts: np.ndarray, policy: FairnessPolicy
) -> dict[str, np.ndarray] | None:
    """Per-replicate rates [replicate, group] of the row bootstrap, drawn as cell counts.

    Hand-written because MetricFrame's own bootstrap (`n_boot`) repeats its row-level cost per
    replicate (measured here: 10 replicates of one selection rate on 100k rows, 9.5 s CPU;
    its metrics cannot be given counts, since it resamples the rows it is given). A
    multinomial draw of the day's size over the cells is the same resampling as drawing rows.
    """
    total = int(counts.sum())
    if policy.n_boot == 0 or total == 0:
        return None
    seed = zlib.crc32("\x1f".join(attributes).encode())
    rng = np.random.default_rng([policy.seed, seed])
    draws = rng.multinomial(total, counts.ravel() / total, size=policy.n_boot)
    r = draws.reshape(policy.n_boot, *counts.shape).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "selection_rate": r.sum(axis=2)[..., 1] / r.sum(axis=(2, 3)),
            "tpr": r[:, :, _POSITIVE, 1] / r[:, :, _POSITIVE].sum(axis=2),
            "fpr": r[:, :, _NEGATIVE, 1] / r[:, :, _NEGATIVE].sum(axis=2),
            "precision": r[:, :, _POSITIVE, 1] / r[:, :, _NEGATIVE:, 1].sum(axis=2),
        }


def _interval(
    boot: dict[str, np.ndarray] | None,
    name: str,
    i: int,
    reported: bool,
    quantiles: tuple[float, float],
) -> Interval | None:
    if boot is None or not reported:
        return None
    column = boot[name][:, i]
    if not np.isfinite(column).any():
        return None
    low, high = np.nanquantile(column, quantiles)
    return float(low), float(high)


def _auc_by_group(
    group_index: np.ndarray,
    label_state: np.ndarray,
    score: np.ndarray,
    by_score: np.ndarray,
    eligible: np.ndarray,
) -> dict[int, float | None]:
    """ROC AUC of each eligible group on all its labelled rows, every group at once: the
    Mann–Whitney statistic of the scores' midranks within the group (tied scores count half,
    as in scikit-learn's `roc_auc_score`)."""
    if not eligible.any():
        return {}
    groups = group_index[by_score]
    if len(eligible) <= 1 << 16:
        groups = groups.astype(np.uint16)  # numpy sorts 16-bit integers by radix, in O(N)
    order = by_score[np.argsort(groups, kind="stable")]  # by group, then score
    del groups
    group, value = group_index[order], score[order]
    positive = label_state[order] == _POSITIVE
    del order
    # per run of tied scores in a group, not per row (a day of 10M rows: arrays of runs)
    starts_group = np.r_[True, group[1:] != group[:-1]]
    run_start = np.flatnonzero(starts_group | np.r_[True, value[1:] != value[:-1]])
    del value
    group_start = np.flatnonzero(starts_group)
    first_of_group = group_start[np.searchsorted(group_start, run_start, side="right") - 1]
    run_stop = np.r_[run_start[1:], len(group)]
    midrank = (run_start + run_stop + 1) / 2 - first_of_group  # 1-based in the group
    run_positives = np.add.reduceat(positive, run_start, dtype=np.int64)
    run_group = group[run_start]
    size = len(eligible)
    positives = np.bincount(run_group, weights=run_positives, minlength=size)
    negatives = np.bincount(run_group, weights=run_stop - run_start, minlength=size) - positives
    rank_sum = np.bincount(run_group, weights=midrank * run_positives, minlength=size)
    out: dict[int, float | None] = {}
    for i in np.flatnonzero(eligible):
        if positives[i] and negatives[i]:
            u = rank_sum[i] - positives[i] * (positives[i] + 1) / 2
            out[int(i)] = _finite(u / (positives[i] * negatives[i]))
        else:
            out[int(i)] = None
    return out


def _label_state(frame: pd.DataFrame, label_column: str, scored: np.ndarray) -> np.ndarray:
    if label_column not in frame.columns:
        return np.zeros(int(scored.sum()), dtype=np.int8)
    label = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(dtype="float64")[scored]
    known = ~np.isnan(label)
    bad = known & (label != 0) & (label != 1)
    if bad.any():
        raise ValueError(f"labels must be 1.0, 0.0 or NaN; found {np.unique(label[bad])[:5]}")
    state = np.full(len(label), _UNLABELLED, dtype=np.int8)
    state[known] = np.where(label[known] == 1, _POSITIVE, _NEGATIVE)
    return state


def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes and sorted group names of one protected column; nulls become `(missing)`."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        found = _factorize_text_categories(values)
        if found is not None:
            return found
    text = pd.Series(values.to_numpy(dtype=object), dtype=object)
    text = text.where(text.notna(), MISSING_GROUP).astype(str)
    codes, uniques = pd.factorize(text, sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _factorize_text_categories(values: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """`_factorize` of a categorical column of text from its codes, without a string per row
    (10M rows: 0.1 s, not 3.5 s); None for other categories (their text is the values'),
    or a category named `(missing)`."""
    categories = values.cat.categories
    if categories.inferred_type != "string" or MISSING_GROUP in categories:
        return None
    names = np.append(categories.to_numpy(dtype=object), MISSING_GROUP)
    raw = values.cat.codes.to_numpy()
    raw = np.where(raw < 0, len(names) - 1, raw)  # null: the last name, `(missing)`
    present = np.flatnonzero(np.bincount(raw, minlength=len(names)))
    ordered = present[np.argsort(names[present].astype(str), kind="stable")]
    renumbered = np.empty(len(names), dtype=np.int64)
    renumbered[ordered] = np.arange(len(ordered))
    return renumbered[raw], names[ordered]


def _denominator(g: GroupMetrics, name: str) -> int:
    if name == "tpr":
        return g.positives
    if name == "fpr":
        return g.negatives
    if name == "auc":
        return min(g.positives, g.negatives)
    return g.labelled_selected  # precision


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def regressions(
    current: FairnessResult, reference: FairnessResult | None, tolerance: float
) -> list[tuple[Disparity, float]]:
    """The breached disparities of `current` that are worse than on `reference` (the
    model's own holdout, as it was approved) by more than `tolerance`, each with the
    reference value. Both are estimates: a breach counts only when the day's interval bound
    nearest parity is worse than the reference's bound farthest from it by more than
    `tolerance` (estimates where there is no interval). A breach the reference has no value
    for, or compares fewer groups for (a holdout too small for some of them), is reported
    by the day's fairness, not counted here. So a model that was already
    this far from parity when it was trained does not alarm every day; one that moves
    further does."""
    baseline = (
        {} if reference is None else {(d.metric, d.attributes): d for d in reference.disparities}
    )
    found = []
    for day in current.breaches:
        before = baseline.get((day.metric, day.attributes))
        if before is None or before.value is None or day.value is None:
            continue
        if before.compared < day.compared:  # the holdout was too small for some groups
            continue
        if day.upper_bound:
            worse = _or(day.ci_low, day.value) - _or(before.ci_high, before.value)
        else:
            worse = _or(before.ci_low, before.value) - _or(day.ci_high, day.value)
        if worse > tolerance:
            found.append((day, before.value))
    return found


def _or(bound: float | None, estimate: float) -> float:
    return estimate if bound is None else bound
