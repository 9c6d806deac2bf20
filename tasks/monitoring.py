"""Monitoring IO: the scored day to compare, saving reports, the long metrics table."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import union_categoricals

from datasets import Dataset, FeatureRoles, labels_of, row_id_numbers
from reports import (
    Decision,
    DriftPolicy,
    DriftResult,
    build_drift_report,
    decide,
    drift_sample,
    quality_metric_rows,
    render_html,
    render_json,
)
from reports.fairness import (
    Disparity,
    FairnessPolicy,
    FairnessResult,
    assess_fairness,
    regressions,
)
from reports.policy import DayAssessment, RetrainPolicy, Verdict, decide_with_memory
from reports.profile import profile_drift
from tasks import step
from tasks.labels import attach_labels, known_labels
from tasks.lake import Lake
from tasks.profiles import load_day_histograms
from tasks.registry import ModelRegistry
from tasks.storage import LOCAL, Store
from tasks.validation import column_kind

METRICS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("ds", pa.string()),
        ("model_version", pa.string()),
        ("metric", pa.string()),
        ("column", pa.string()),
        ("group", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("breached", pa.bool_()),
        ("_run_id", pa.string()),
    ]
)


SCORED_BATCH_ROWS = 1 << 18


def load_scored_day(
    lake: Lake, dataset: Dataset, ds: str, model_version: str, *, row_ids: bool = False
) -> pd.DataFrame:
    """Per scored silver row of the day (in silver's order), only what fairness and quality
    read: the protected attributes (derived ones added, text as categories whatever the
    files' dictionaries), `score`, and `label`: 1.0 / 0.0 where the label is known (from
    the labels feed, else as landed), NaN where it is not yet; `_row_id` only when asked
    for. Read `SCORED_BATCH_ROWS` at a time (a day of 10M rows whole took 5 GB)."""
    needed = list(_needed(dataset))
    kept = [*dataset.roles.protected, "score", "label", *(["_row_id"] if row_ids else [])]
    scores = _ScoresById(_predictions(lake, dataset, ds, model_version))
    labels, _ = known_labels(lake, dataset)
    rows = []
    for batch in _silver_batches(lake, dataset, ds, needed):
        score, scored = scores.of(batch.column("_row_id"))
        frame = batch.filter(pa.array(scored)).append_column("score", pa.array(score))
        frame = frame.to_pandas()
        frame, _ = attach_labels(frame, labels, dataset)
        known = frame[dataset.roles.target].notna().to_numpy()
        frame["label"] = np.where(known, labels_of(frame, dataset.roles), np.nan)
        rows.append(dataset.derive_protected(frame)[kept])
    return _concatenated(rows, kept)


def scored_sample(
    lake: Lake, dataset: Dataset, ds: str, model_version: str, rows: int
) -> pd.DataFrame:
    """The features and `score` of at most `rows` scored rows of the day: those of the
    smallest row ids, in that order. Ids are hashes, so this is a uniform sample, the same
    whatever the files' order or batches."""
    predictions = _predictions(lake, dataset, ds, model_version)
    if predictions.num_rows > rows:
        keys = _sampling_keys(predictions.column("_row_id"))
        predictions = predictions.take(np.argpartition(keys, rows - 1)[:rows])
    sampled = _ScoresById(predictions)
    columns = ["_row_id", *dataset.roles.features]
    frames = []
    for batch in _silver_batches(lake, dataset, ds, columns):
        score, scored = sampled.of(batch.column("_row_id"))
        frames.append(batch.filter(pa.array(scored)).append_column("score", pa.array(score)))
    sample = _concatenated([frame.to_pandas() for frame in frames], [*columns, "score"])
    order = np.argsort(_sampling_keys(pa.array(sample["_row_id"], pa.string())))
    return sample.iloc[order].drop(columns="_row_id").reset_index(drop=True)


def _sampling_keys(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit key per row id: the number it spells, else (ids of another shape) a hash of
    its text."""
    numbers = row_id_numbers(ids)
    if numbers is not None:
        return numbers
    return pd.util.hash_array(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object))


NO_PREDICTIONS = pa.table(
    {"_row_id": pa.array([], pa.string()), "score": pa.array([], pa.float64())}
)


def _predictions(lake: Lake, dataset: Dataset, ds: str, model_version: str) -> pa.Table:
    """The ids and scores of the day's predictions by `model_version` (none before the
    dataset's first scoring)."""
    where = {"ds": ds, "model_version": model_version}
    found = lake.read("predictions", dataset.name, where=where, columns=["_row_id", "score"])
    return found if found.num_columns else NO_PREDICTIONS


def _silver_batches(
    lake: Lake, dataset: Dataset, ds: str, columns: list[str]
) -> Iterator[pa.Table]:
    """The day's silver `columns`, `SCORED_BATCH_ROWS` at a time, text as dictionaries."""
    text = [
        name
        for name in columns
        if name in dataset.columns and column_kind(dataset, name) == "string"
    ]
    return lake.read_batches(
        "silver", dataset.name, {"ds": ds}, SCORED_BATCH_ROWS, dictionaries=text, columns=columns
    )


class _ScoresById:
    """A day's predictions looked up by row id: by the numbers the ids spell (sorted; 12
    bytes a row), by their text where they are of another shape."""

    def __init__(self, predictions: pa.Table):
        ids = predictions.column("_row_id")
        self.numbers = row_id_numbers(ids)
        self.scores = predictions.column("score").to_numpy()
        if self.numbers is None:
            self.ids = ids.combine_chunks()
        else:
            order = np.argsort(self.numbers)
            self.numbers, self.scores = self.numbers[order], self.scores[order]

    def of(self, ids: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """Of `ids`: the scores of the scored ones, and which are scored."""
        if self.numbers is None:
            position = pc.index_in(ids, self.ids).to_numpy(zero_copy_only=False)
            scored = ~np.isnan(position)
            return self.scores[position[scored].astype(np.int64)], scored
        numbers, spelled = _spelled_numbers(ids)
        if len(self.numbers) == 0:
            return self.scores, np.zeros(len(numbers), dtype=bool)
        order = np.argsort(numbers)  # sorted needles: numpy's search narrows from the last
        position = np.empty(len(numbers), dtype=np.int64)
        position[order] = np.searchsorted(self.numbers, numbers[order])
        position = np.minimum(position, len(self.numbers) - 1)
        scored = (self.numbers[position] == numbers) & spelled
        return self.scores[position[scored]], scored


def _spelled_numbers(ids: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The numbers `ids` spell, and which of them spell one: the others (0 here) are in no
    table whose ids all spell numbers."""
    numbers = row_id_numbers(ids)
    if numbers is not None:
        return numbers, np.ones(len(numbers), dtype=bool)
    spelled = pc.fill_null(pc.match_substring_regex(ids, "^[0-9a-f]{16}$"), False)
    numbers = np.zeros(len(ids), dtype=np.uint64)
    numbers[spelled.to_numpy(zero_copy_only=False)] = row_id_numbers(ids.filter(spelled))
    return numbers, spelled.to_numpy(zero_copy_only=False)


def _concatenated(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Frames of the same columns as one, the categories of each column united (every file
    has its own dictionary); `columns` when there is none."""
    if not frames:
        return pd.DataFrame(columns=columns)
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    joined = {}
    for name in frames[0].columns:
        parts = [frame[name] for frame in frames]
        if isinstance(parts[0].dtype, pd.CategoricalDtype):
            joined[name] = union_categoricals(parts)
        else:
            joined[name] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(joined)


def _needed(dataset: Dataset) -> dict[str, None]:
    """Silver columns the monitor reads (ordered, unique): every declared column but free
    text, and the row id."""
    text = set(dataset.roles.text)
    return dict.fromkeys(["_row_id", *(c for c in dataset.columns if c not in text)])


@dataclass(frozen=True)
class SampleDrift:
    """Evidently's drift of a sample of the day, the policy's verdict on it, and the report
    rendered as HTML and JSON (the result carries no Evidently object)."""

    result: DriftResult
    decision: Decision
    html: str
    json: str


def drift_inputs(frame: pd.DataFrame, roles: FeatureRoles, max_rows: int) -> pd.DataFrame:
    """The columns and rows of `frame` that `sample_drift` reads: the features and score."""
    columns = list(dict.fromkeys([*roles.numeric, *roles.categorical, "score"]))
    return drift_sample(frame[[c for c in columns if c in frame.columns]], max_rows)


@step(retries=2)
def report_day_drift(
    lake: Lake,
    dataset: Dataset,
    ds: str,
    model_version: str,
    reference: pd.DataFrame,
    policy: DriftPolicy,
    max_rows: int,
) -> SampleDrift | None:
    """`sample_drift` of the day's `scored_sample` of `max_rows` rows from `reference`
    (None for a day without a scored row). The pipeline runs it on a Dask worker, beside
    `measure_day`: the sample, Evidently's import (about 9 s of Python) and its report then
    cost the run's process nothing, and a served cluster's workers import Evidently once."""
    current = scored_sample(lake, dataset, ds, model_version, max_rows)
    if current.empty:
        return None
    return sample_drift(reference, current, dataset.roles, policy, max_rows)


def sample_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    roles: FeatureRoles,
    policy: DriftPolicy,
    max_rows: int,
) -> SampleDrift:
    """Evidently drift of the features and score on at most `max_rows` rows of each side,
    the policy's verdict, and the rendered report."""
    result = build_drift_report(
        reference,
        current,
        numeric=roles.numeric,
        categorical=roles.categorical,
        score_column="score",
        max_rows=max_rows,
    )
    decision = decide(result, policy, score_column="score")
    return SampleDrift(
        replace(result, snapshot=None),
        decision,
        render_html(result),
        render_json(result, decision),
    )


@step(retries=2)
def full_data_drift(
    lake: Lake, registry: ModelRegistry, dataset: str, ds: str, model_version: str
) -> DriftResult | None:
    """Drift of every scored row of the day from the model's reference profile, from the
    histograms the score step counted; None for a model without a profile or a day the
    score step counted none for."""
    profile = registry.profile(dataset, model_version)
    histograms = load_day_histograms(lake, dataset, ds, model_version)
    if profile is None or histograms is None:
        return None
    return profile_drift(profile, histograms)


@dataclass(frozen=True)
class BiasAssessment:
    """Fairness of the day, of the model's reference (its holdout), and the breaches that
    are regressions from the reference: the ones the retrain policy counts."""

    day: FairnessResult
    reference: FairnessResult | None
    regressed: tuple[tuple[Disparity, float], ...]

    def breach_lines(self) -> tuple[str, ...]:
        lines = []
        for d, before in self.regressed:
            side = "above" if d.upper_bound else "below"
            lines.append(
                f"{d.metric} of {d.column} {d.value:.3f} ({side} {d.threshold:g}; "
                f"holdout {before:.3f})"
            )
        return tuple(lines)


@dataclass(frozen=True)
class DayMeasures:
    """What the monitor measures on every scored row of a day."""

    rows: int
    quality: list[dict[str, Any]]
    """`quality:*` metrics rows (`quality:labelled_rows` alone while no label is known)."""
    bias: BiasAssessment | None


@step(retries=2)
def measure_day(
    lake: Lake,
    dataset: Dataset,
    ds: str,
    model_version: str,
    reference: pd.DataFrame,
    fairness: FairnessPolicy,
) -> DayMeasures:
    """Quality and fairness (`assess_bias`, against the model's `reference`) of every
    scored row of the day (`load_scored_day`). The pipeline runs it on a Dask worker, beside
    the drift report: the day's rows, scikit-learn and fairlearn then cost the run's process
    nothing, and a served cluster's workers keep the reference's fairness from day to day."""
    current = load_scored_day(lake, dataset, ds, model_version)
    if current.empty:
        return DayMeasures(0, [], None)
    quality = quality_metric_rows(
        dataset.name, ds, model_version, current["label"].to_numpy(), current["score"].to_numpy()
    )
    bias = assess_bias(current, reference, dataset, fairness)
    return DayMeasures(len(current), quality, bias)


def assess_bias(
    day: pd.DataFrame, reference: pd.DataFrame, dataset: Dataset, policy: FairnessPolicy
) -> BiasAssessment | None:
    """Fairness over the protected attributes and their pairs on the day and on the
    model's reference (None when the dataset declares no protected attribute)."""
    protected = dataset.roles.protected
    if not protected:
        return None
    result = assess_fairness(day, protected, policy)
    baseline = None
    with_protected = dataset.derive_protected(reference)
    if set(protected) <= set(with_protected.columns):
        baseline = _reference_fairness(with_protected, tuple(protected), policy)
    found = regressions(result, baseline, policy.regression_tolerance)
    return BiasAssessment(result, baseline, tuple(found))


_REFERENCE_FAIRNESS: dict[tuple, FairnessResult] = {}


def _reference_fairness(
    reference: pd.DataFrame, protected: tuple[str, ...], policy: FairnessPolicy
) -> FairnessResult:
    """The fairness of a model's reference, computed once per process: every day a model
    monitors (and every recomputation when labels land) compares with the same rows."""
    key = (int(pd.util.hash_pandas_object(reference, index=False).sum()), protected, policy)
    if key not in _REFERENCE_FAIRNESS:
        if len(_REFERENCE_FAIRNESS) >= 8:
            _REFERENCE_FAIRNESS.clear()
        _REFERENCE_FAIRNESS[key] = assess_fairness(reference, protected, policy)
    return _REFERENCE_FAIRNESS[key]


def fairness_summary(bias: BiasAssessment | None) -> list[str]:
    """A few lines for the artifact: how many disparities breach, and the regressions."""
    if bias is None:
        return ["no protected attribute declared"]
    result = bias.day
    labels = "with labels" if result.labels_present else "labels not known yet"
    return [
        f"{len(result.groupings)} groupings, {len(result.groups)} groups ({labels}): "
        f"{len(result.breaches)} disparities beyond their thresholds, "
        f"{len(bias.regressed)} of them worse than on the model's holdout by more than "
        f"{result.policy.regression_tolerance:g}",
        *bias.breach_lines(),
    ]


def report_folder(reports_uri: str, dataset: str, ds: str) -> str:
    return f"{reports_uri.rstrip('/')}/{dataset}/{ds}"


@step(retries=2)
def save_drift_report(
    reports_uri: str, dataset: str, ds: str, report: SampleDrift, store: Store = LOCAL
) -> dict[str, str]:
    """Write `drift.html` and `drift.json` under `reports/{dataset}/{ds}/`; returns their URIs."""
    folder = report_folder(reports_uri, dataset, ds)
    fs, path = store.filesystem(folder)
    fs.makedirs(path, exist_ok=True)
    written = {}
    for kind, text in (("html", report.html), ("json", report.json)):
        fs.pipe_file(f"{path}/drift.{kind}", text.encode())
        written[kind] = f"{folder}/drift.{kind}"
    return written


@step(retries=2)
def save_pages(
    reports_uri: str,
    dataset: str,
    ds: str,
    day_html: str,
    day_json: Mapping[str, Any],
    trend_html: str,
    store: Store = LOCAL,
) -> dict[str, str]:
    """Write the day's `monitor.html` / `monitor.json` and the dataset's `trend.html`;
    returns their URIs."""
    folder = report_folder(reports_uri, dataset, ds)
    trend = f"{reports_uri.rstrip('/')}/{dataset}/trend.html"
    written = {
        "html": (f"{folder}/monitor.html", day_html),
        "json": (f"{folder}/monitor.json", json.dumps(day_json, default=str)),
        "trend": (trend, trend_html),
    }
    fs, _ = store.filesystem(folder)
    for uri, text in written.values():
        path = store.filesystem(uri)[1]
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, text.encode())
    return {kind: uri for kind, (uri, _) in written.items()}


@step(retries=2)
def metrics_history(lake: Lake, dataset: str) -> pd.DataFrame:
    """Every metrics row of `dataset` (for the trend page)."""
    return lake.read("metrics", None, where={"dataset": dataset}).to_pandas()


PRESIGNED_SECONDS = 7 * 24 * 3600


def report_url(
    reports_uri: str,
    report: str,
    base_url: str | None,
    store: Store = LOCAL,
) -> str | None:
    """A link an operator's browser can open: under `base_url` where the reports folder is
    served over HTTP, else a presigned URL where the store signs (S3), else None."""
    if base_url:
        relative = report.removeprefix(reports_uri.rstrip("/")).lstrip("/")
        return f"{base_url.rstrip('/')}/{relative}"
    fs, path = store.filesystem(report)
    try:
        return fs.sign(path, expiration=PRESIGNED_SECONDS)
    except NotImplementedError:
        return None


@step(retries=2)
def write_metrics(
    lake: Lake,
    rows: Sequence[dict[str, Any]],
    dataset: str,
    ds: str,
    model_version: str,
    run_id: str,
) -> int:
    """Replace the (dataset, ds, model version) slice of the long metrics table."""
    table = pa.Table.from_pylist([row | {"_run_id": run_id} for row in rows], schema=METRICS_SCHEMA)
    return lake.replace_slice(
        "metrics",
        None,
        table,
        {"dataset": dataset, "ds": ds, "model_version": model_version},
        run_id=run_id,
        partition_by=("dataset", "ds"),
    )


DECISION_CODES = {Verdict.OK: 0.0, Verdict.WARN: 1.0, Verdict.RETRAIN: 2.0}
VERDICT_OF_CODE = {code: verdict for verdict, code in DECISION_CODES.items()}


def decision_metric_rows(
    dataset: str, ds: str, model_version: str, day: DayAssessment
) -> list[dict[str, Any]]:
    """The day's assessment and the policy's verdict as metrics rows, which the policy's
    memory (and `tidewater policy replay`) read back: `decision:drift` and
    `decision:verdict` (0 ok, 1 warn, 2 retrain), one `decision:bias_breach` per breach."""

    def row(metric: str, value: float, column: str | None = None) -> dict[str, Any]:
        return {
            "dataset": dataset,
            "ds": ds,
            "model_version": model_version,
            "metric": metric,
            "column": column,
            "group": None,
            "value": value,
            "threshold": DECISION_CODES[Verdict.RETRAIN],
            "breached": value >= DECISION_CODES[Verdict.RETRAIN],
        }

    rows = [row("decision:drift", DECISION_CODES[day.drift])]
    rows += [row("decision:bias_breach", 2.0, breach) for breach in day.bias_breaches]
    if day.verdict is not None:
        rows.append(row("decision:verdict", DECISION_CODES[day.verdict]))
    return rows


def recorded_assessments(
    lake: Lake, dataset: str, start: str | None = None, end: str | None = None
) -> list[DayAssessment]:
    """The decided days of `dataset` in [start, end) as the metrics table holds them; of a
    day monitored with several model versions, the newest version's."""
    metrics = lake.read("metrics", None, where={"dataset": dataset})
    if metrics.num_rows == 0:
        return []
    frame = metrics.to_pandas()
    frame = frame[frame["metric"].str.startswith("decision:")]
    if start:
        frame = frame[frame["ds"] >= start]
    if end:
        frame = frame[frame["ds"] < end]
    days = []
    for ds, rows in frame.groupby("ds", sort=True):
        newest = max(rows["model_version"], key=_version_number)
        rows = rows[rows["model_version"] == newest]
        value = dict(zip(rows["metric"], rows["value"], strict=False))
        breaches = rows.loc[rows["metric"] == "decision:bias_breach", "column"]
        days.append(
            DayAssessment(
                ds=ds,
                drift=VERDICT_OF_CODE[value["decision:drift"]],
                bias_breaches=tuple(sorted(breaches)),
                verdict=VERDICT_OF_CODE.get(value.get("decision:verdict")),
            )
        )
    return days


def _version_number(version: str) -> int:
    digits = "".join(ch for ch in version if ch.isdigit())
    return int(digits) if digits else -1


@step(retries=2)
def decide_day(
    lake: Lake, dataset: str, today: DayAssessment, policy: RetrainPolicy
) -> DayAssessment:
    """Today's verdict under the policy, remembering the days decided before it."""
    start = (date.fromisoformat(today.ds) - timedelta(days=policy.memory_days)).isoformat()
    return decide_with_memory(today, recorded_assessments(lake, dataset, start, today.ds), policy)
