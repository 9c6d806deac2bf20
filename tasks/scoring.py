"""Bulk scoring: plan shards over a silver partition, score each shard on a worker,
commit every shard's predictions of a model version in one atomic replace."""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kernels import Forest, compile_forest, predict
from kernels.device import resolve
from reports.profile import ReferenceProfile
from tasks import step
from tasks.features import FeatureSpec, feature_matrix
from tasks.lake import Lake, StagedFile
from tasks.profiles import (
    HistogramPass,
    check_profile_matches,
    merge_histograms,
    write_day_histograms,
)
from tasks.registry import ModelCard, ModelRegistry, load_profile, read_verified_model
from tasks.storage import LOCAL, Store

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("_row_id", pa.string()),
        ("ds", pa.string()),
        ("model_version", pa.string()),
        ("role", pa.string()),
        ("score", pa.float32()),
        ("label", pa.int8()),
        ("_run_id", pa.string()),
        ("_scored_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class ShardPart:
    """Row groups of one Parquet file of the table."""

    uri: str
    row_groups: tuple[int, ...]
    rows: int


@dataclass(frozen=True)
class Shard:
    index: int
    parts: tuple[ShardPart, ...]

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)


@dataclass(frozen=True)
class ModelRef:
    """A model version to score with, and the role its rows are tagged with, resolved once
    on the driver into what workers need: the card, where the model JSON and profile lie,
    and the checksum the registry holds. Workers read the bytes directly (no registry
    database) and verify them."""

    dataset: str
    version: str
    role: str
    card: ModelCard = field(repr=False)
    model_json_uri: str
    profile_uri: str
    store: Store = LOCAL

    @property
    def checksum(self) -> str:
        return self.card.checksum

    @classmethod
    def resolve(cls, registry: ModelRegistry, dataset: str, version: str, role: str) -> ModelRef:
        locations = registry.locations(dataset, version)
        return cls(
            dataset,
            version,
            role,
            registry.card(dataset, version),
            locations["model_json"],
            locations["profile"],
            registry.store,
        )


@dataclass(frozen=True)
class ShardScores:
    shard: int
    rows: int
    seconds: float
    device: str
    worker: str
    events: tuple[str, ...]
    files: dict[str, StagedFile] = field(repr=False)
    cpu_seconds: float = 0.0
    worker_peak_memory_bytes: int = 0
    histograms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    """Per model version that has a reference profile: counts per profile column of this
    shard's rows (features and score), to be merged on the driver."""


@step(retries=2)
def plan_shards(
    lake: Lake,
    dataset: str,
    ds: str,
    shard_rows: int,
    shard_bytes: int = 256 * 2**20,
    min_shards: int = 1,
) -> list[Shard]:
    """Consecutive row groups of the partition's files packed into balanced shards of about
    `shard_rows` rows and `shard_bytes` uncompressed bytes at most, and at least
    `min_shards` of them (one per worker thread keeps every worker busy) as far as row
    groups allow. Each worker then reads only its own bytes."""
    table = lake.table("silver", dataset)
    if table is None:
        return []
    groups = []
    for uri in sorted(table.file_uris(partition_filters=[("ds", "=", ds)])):
        metadata = _parquet_metadata(uri, lake.store)
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            groups.append((uri, index, group.num_rows, group.total_byte_size))
    total_rows = sum(g[2] for g in groups)
    total_bytes = sum(g[3] for g in groups)
    count = max(1, -(-total_rows // shard_rows), -(-total_bytes // shard_bytes))
    count = min(max(count, min_shards), max(1, len(groups)))
    target = max(1, -(-total_rows // count))
    members: list[list[ShardPart]] = [[] for _ in range(count)]
    offset = 0
    for uri, index, group_rows, _ in groups:
        parts = members[min(count - 1, offset // target)]
        if parts and parts[-1].uri == uri:
            last = parts[-1]
            parts[-1] = ShardPart(uri, (*last.row_groups, index), last.rows + group_rows)
        else:
            parts.append(ShardPart(uri, (index,), group_rows))
        offset += group_rows
    return [Shard(i, tuple(parts)) for i, parts in enumerate(p for p in members if p)]


def _parquet_metadata(uri: str, store: Store) -> pq.FileMetaData:
    with store.open(uri, "rb") as handle:
        return pq.ParquetFile(handle).metadata


def read_shard(
    shard: Shard,
    columns: Sequence[str],
    store: Store,
    categorical: Sequence[str] = (),
) -> pa.Table:
    """Only this shard's row groups and only `columns`; `categorical` ones stay dictionary
    encoded as stored."""
    tables = []
    for part in shard.parts:
        with store.open(part.uri, "rb") as handle:
            parquet = pq.ParquetFile(handle, read_dictionary=list(categorical))
            tables.append(parquet.read_row_groups(list(part.row_groups), columns=list(columns)))
    return pa.concat_tables(tables)


_FORESTS: dict[tuple, tuple[ModelCard, Forest]] = {}
_PROFILES: dict[tuple, ReferenceProfile | None] = {}


def cached_forest(model: ModelRef) -> tuple[ModelCard, Forest]:
    """The model's compiled forest, loaded once per worker process (versions are immutable):
    its bytes are checked against the registry's checksum on load, and the forest stays
    cached (the GPU launcher keeps its arrays on the device), so scoring a shard never ships
    the model again."""
    key = (model.model_json_uri, model.checksum)
    if key not in _FORESTS:
        model_json = read_verified_model(
            model.model_json_uri,
            model.checksum,
            model.store,
            f"{model.dataset} {model.version}",
        )
        _FORESTS[key] = (model.card, compile_forest(model_json))
    return _FORESTS[key]


def cached_profile(model: ModelRef) -> ReferenceProfile | None:
    """The model's reference profile (None when stored without one), loaded once per worker
    process and checked against the model's features."""
    key = (model.profile_uri, model.checksum)
    if key not in _PROFILES:
        profile = load_profile(model.profile_uri, model.store)
        if profile is not None:
            check_profile_matches(profile, cached_forest(model)[0].feature_spec)
        _PROFILES[key] = profile
    return _PROFILES[key]


def _is_gpu_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def predict_in_batches(
    rows: pa.Table,
    spec: FeatureSpec,
    forest: Forest,
    device: str,
    batch_rows: int,
    min_batch_rows: int = 1024,
    histograms: HistogramPass | None = None,
) -> tuple[np.ndarray, str, list[str]]:
    """Positive-class probabilities of every row, batch by batch, on `device` ("auto" picks
    the GPU when the worker has one). A GPU out-of-memory error halves the batch; below
    `min_batch_rows` the rest falls back to the CPU twin. Returns the scores, the device
    that finished, and what happened on the way. `histograms`, when given, also counts each
    batch's feature matrix and scores on the same device (once per row, retries included)."""
    backend = resolve(device, prefer_gpu=True)
    scores = np.empty(rows.num_rows, dtype=np.float32)
    events: list[str] = []
    start = 0
    while start < rows.num_rows:
        batch = rows.slice(start, batch_rows)
        try:
            X = feature_matrix(batch, spec, device=backend)
            probability = predict(forest, X, device=backend, output="probability")
            measured = histograms.measure(X, probability, backend) if histograms else None
        except Exception as error:
            if backend != "gpu" or not _is_gpu_out_of_memory(error):
                raise
            if batch_rows // 2 >= min_batch_rows:
                batch_rows //= 2
                events.append(f"gpu out of memory: batch halved to {batch_rows} rows")
            else:
                backend = "cpu"
                events.append("gpu out of memory: fell back to the cpu twin")
            continue
        scores[start : start + batch.num_rows] = _to_host(probability)
        if measured is not None:
            histograms.add(measured)
        start += batch.num_rows
    return scores, backend, events


def _to_host(values) -> np.ndarray:
    return values.get() if hasattr(values, "get") else np.asarray(values)


def score_rows(
    rows: pa.Table,
    models: Sequence[ModelRef],
    ds: str,
    run_id: str,
    device: str = "auto",
    batch_rows: int = 1 << 20,
) -> tuple[dict[str, pa.Table], str, list[str]]:
    """Each model's predictions for `rows` (one row per input row), by model version."""
    outputs, used, events, _ = score_and_profile_rows(
        rows, models, ds, run_id, device, batch_rows, histograms=False
    )
    return outputs, used, events


def score_and_profile_rows(
    rows: pa.Table,
    models: Sequence[ModelRef],
    ds: str,
    run_id: str,
    device: str = "auto",
    batch_rows: int = 1 << 20,
    histograms: bool = True,
) -> tuple[dict[str, pa.Table], str, list[str], dict[str, dict[str, np.ndarray]]]:
    """`score_rows`, and in the same pass (when `histograms`) the histograms of every model
    that has a reference profile: counts per profile column, by model version."""
    outputs, used, events, counts = {}, "cpu", [], {}
    now = datetime.now(UTC)
    for model in models:
        card, forest = cached_forest(model)
        profile = cached_profile(model) if histograms else None
        measured = HistogramPass(profile) if profile is not None else None
        scores, used, happened = predict_in_batches(
            rows, card.feature_spec, forest, device, batch_rows, histograms=measured
        )
        if measured is not None:
            counts[model.version] = measured.result()
        events += [f"{model.version}: {event}" for event in happened]
        n = len(scores)
        outputs[model.version] = pa.Table.from_pydict(
            {
                "_row_id": rows.column("_row_id"),
                "ds": _constant(ds, n, pa.string()),
                "model_version": _constant(model.version, n, pa.string()),
                "role": _constant(model.role, n, pa.string()),
                "score": scores,
                "label": (scores >= 0.5).astype(np.int8),
                "_run_id": _constant(run_id, n, pa.string()),
                "_scored_at": _constant(now, n, PREDICTIONS_SCHEMA.field("_scored_at").type),
            },
            schema=PREDICTIONS_SCHEMA,
        )
    return outputs, used, events, counts


def _match_worker_threads() -> None:
    """The CPU twin uses as many threads as the worker was given, not every core."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):
        return
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _constant(value, n: int, type_: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), n)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid-{os.getpid()}"


def record_attempt(staging_uri: str, shard: Shard, store: Store) -> None:
    """Leave a uniquely named marker per attempt, so retries and recomputations after a
    worker's death are visible afterwards (the shard's output itself is not staged)."""
    fs, path = store.filesystem(staging_uri)
    fs.makedirs(path, exist_ok=True)
    fs.pipe_file(f"{path}/shard-{shard.index:05d}.{uuid.uuid4().hex}", _worker_name().encode())


def attempts_by_shard(staging_uri: str, store: Store) -> dict[int, int]:
    fs, path = store.filesystem(staging_uri)
    if not fs.exists(path):
        return {}
    counts: dict[int, int] = {}
    for name in fs.ls(path, detail=False):
        index = int(name.rsplit("/", 1)[-1].split(".")[0].removeprefix("shard-"))
        counts[index] = counts.get(index, 0) + 1
    return counts


@step
def clear_staging(staging_uri: str, store: Store) -> dict[int, int]:
    """How many attempts each shard took; then the run's markers are removed."""
    attempts = attempts_by_shard(staging_uri, store)
    fs, path = store.filesystem(staging_uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    return attempts


@step(retries=2)
def score_shard(
    shard: Shard,
    models: Sequence[ModelRef],
    ds: str,
    run_id: str,
    lake_root: str,
    staging_uri: str,
    device: str = "auto",
    batch_rows: int = 1 << 20,
    store: Store = LOCAL,
) -> ShardScores:
    """Read one shard (feature columns and `_row_id` only), score it with every model on
    this worker's device, and stage each model's rows as a new data file of the predictions
    table. Nothing is committed here: the driver commits the files of finished shards once,
    so a shard that runs twice (retry, dead worker) leaves at most an orphan file. For each
    model with a reference profile, the histograms of its feature matrix and scores come
    back in the result (computed in the same pass, on the same device)."""
    record_attempt(staging_uri, shard, store)
    _match_worker_threads()
    started, cpu_started = time.perf_counter(), time.process_time()
    cards = [cached_forest(model)[0] for model in models]
    columns = sorted({"_row_id", *(name for card in cards for name in card.feature_spec.names)})
    categorical = {name for card in cards for name in card.feature_spec.categorical}
    rows = read_shard(shard, columns, store, sorted(categorical))
    predictions, device_used, events, histograms = score_and_profile_rows(
        rows, models, ds, run_id, device, batch_rows
    )
    lake = Lake(lake_root, store)
    files = {
        model.version: lake.stage_file(
            "predictions",
            model.dataset,
            predictions[model.version],
            {"ds": ds, "model_version": model.version},
            unique=("_row_id",),
        )
        for model in models
    }
    return ShardScores(
        shard=shard.index,
        rows=rows.num_rows,
        seconds=time.perf_counter() - started,
        device=device_used,
        worker=_worker_name(),
        events=tuple(events),
        files=files,
        cpu_seconds=time.process_time() - cpu_started,
        worker_peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        histograms=histograms,
    )


@step(retries=2)
def commit_predictions(
    lake: Lake,
    dataset: str,
    ds: str,
    models: Sequence[ModelRef],
    results: Sequence[ShardScores],
    run_id: str,
) -> dict[str, int]:
    """After every shard finished: per model version, replace its (ds, version) slice of
    the predictions table with the files the shards staged, in one commit. Files of
    attempts that did not finish are never committed. Returns the versions written."""
    return {
        f"predictions@{model.version}": lake.commit_files(
            "predictions",
            dataset,
            [result.files[model.version] for result in results],
            PREDICTIONS_SCHEMA,
            {"ds": ds, "model_version": model.version},
            run_id=run_id,
            partition_by=("ds", "model_version"),
        )
        for model in models
    }


@step(retries=2)
def commit_histograms(
    lake: Lake,
    dataset: str,
    ds: str,
    models: Sequence[ModelRef],
    results: Sequence[ShardScores],
    run_id: str,
) -> dict[str, int]:
    """After every shard finished: per model version with a reference profile, the sum of
    the shards' histograms replaces its (ds, version) slice of the `histograms` table in one
    commit. Only the finished shards' results are merged, each shard once (a shard that
    ran twice returned one result), so a retried day converges to the same slice. Returns
    the versions written."""
    by_shard = {result.shard: result for result in results}
    if len(by_shard) != len(results):
        raise ValueError("two results for one shard: a shard's rows would count twice")
    written = {}
    for model in models:
        profile = load_profile(model.profile_uri, model.store)
        if profile is None:
            continue
        shards = [r.histograms.get(model.version) for r in results]
        if any(h is None for h in shards):
            raise ValueError(f"a shard returned no histograms for {model.version}")
        merged = merge_histograms(profile, shards)
        rows = sum(r.rows for r in results)
        bad = {name: int(c.sum()) for name, c in merged.items() if int(c.sum()) != rows}
        if bad:
            raise ValueError(f"histograms of {model.version} do not count {rows} rows: {bad}")
        written[f"histograms@{model.version}"] = write_day_histograms(
            lake, dataset, ds, model.version, merged, run_id
        )
    return written


def worker_usage(results: Sequence[ShardScores]) -> dict[str, float | int]:
    """What the Dask workers spent on a scoring pass: CPU seconds of their processes during
    the shards, seconds of shards scored on a GPU (if any), and the highest worker memory
    mark."""
    on_gpu = [r.seconds for r in results if r.device.startswith("gpu")]
    return {
        "cpu_seconds": sum(r.cpu_seconds for r in results),
        "peak_memory_bytes": max((r.worker_peak_memory_bytes for r in results), default=0),
    } | ({"gpu_seconds": sum(on_gpu)} if on_gpu else {})


def shard_summary(
    results: Sequence[ShardScores], attempts: Mapping[int, int], seconds: float
) -> dict:
    """What the ledger records of a scoring pass: per shard rows, time, device, worker,
    attempts and GPU fallbacks; in total rows and rows/s."""
    rows = sum(result.rows for result in results)
    shards = [
        {
            "shard": r.shard,
            "rows": r.rows,
            "seconds": round(r.seconds, 3),
            "rows_per_second": round(r.rows / r.seconds) if r.seconds > 0 else None,
            "device": r.device,
            "worker": r.worker,
            "attempts": attempts.get(r.shard, 1),
            "events": list(r.events),
        }
        for r in sorted(results, key=lambda r: r.shard)
    ]
    return {
        "rows": rows,
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
        "devices": sorted({r.device for r in results}),
        "retried_shards": [s["shard"] for s in shards if s["attempts"] > 1],
        "fallbacks": [s["shard"] for s in shards if s["events"]],
        "shards": shards,
    }


@dataclass
class ShardProgress:
    """A Prefect progress artifact of the scoring pass, advanced as shards finish."""

    artifact_id: object
    total: int
    done: int = 0

    @classmethod
    def start(cls, dataset: str, ds: str, total: int) -> ShardProgress:
        from prefect.artifacts import create_progress_artifact

        key = f"score-{dataset}-{ds}".lower().replace("_", "-")
        artifact_id = create_progress_artifact(
            0.0, key=key, description=f"shards of {dataset} ds={ds} scored"
        )
        return cls(artifact_id, total)

    def advance(self, result: ShardScores) -> ShardScores:
        from prefect.artifacts import update_progress_artifact

        self.done += 1
        update_progress_artifact(self.artifact_id, 100.0 * self.done / max(1, self.total))
        return result


@step
def resolve_models(registry: ModelRegistry, dataset: str) -> list[ModelRef]:
    """The champion, then the challenger if one is named: the models a day is scored with."""
    aliases = registry.aliases(dataset)
    if "champion" not in aliases:
        raise LookupError(f"no champion model for {dataset}: train one first")
    refs = [ModelRef.resolve(registry, dataset, aliases["champion"], "champion")]
    challenger = aliases.get("challenger")
    if challenger and challenger != aliases["champion"]:
        refs.append(ModelRef.resolve(registry, dataset, challenger, "challenger"))
    return refs
