"""Bulk scoring: plan shards over a silver partition, score each shard on a worker,
commit every shard's predictions of a model version in one atomic replace."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import step
from tasks.features import feature_matrix
from tasks.lake import Lake
from tasks.model_store import ModelStore

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
    """A model version to score with, and the role its rows are tagged with."""

    dataset: str
    version: str
    role: str
    store: ModelStore


@dataclass(frozen=True)
class ShardScores:
    shard: int
    rows: int
    seconds: float
    device: str
    predictions: pa.Table = field(repr=False)


@step(retries=2)
def plan_shards(lake: Lake, dataset: str, ds: str, shard_rows: int) -> list[Shard]:
    """Consecutive row groups of the partition's files packed into shards of at most
    `shard_rows` rows (a larger row group is a shard of its own)."""
    table = lake.table("silver", dataset)
    if table is None:
        return []
    uris = table.file_uris(partition_filters=[("ds", "=", ds)])
    shards: list[Shard] = []
    parts: list[ShardPart] = []
    rows = 0
    for uri in sorted(uris):
        metadata = _parquet_metadata(uri, lake.storage_options)
        for group in range(metadata.num_row_groups):
            group_rows = metadata.row_group(group).num_rows
            if rows and rows + group_rows > shard_rows:
                shards.append(Shard(len(shards), tuple(parts)))
                parts, rows = [], 0
            if parts and parts[-1].uri == uri:
                last = parts[-1]
                parts[-1] = ShardPart(uri, last.row_groups + (group,), last.rows + group_rows)
            else:
                parts.append(ShardPart(uri, (group,), group_rows))
            rows += group_rows
    if parts:
        shards.append(Shard(len(shards), tuple(parts)))
    return shards


def _parquet_metadata(uri: str, storage_options: Mapping[str, str]) -> pq.FileMetaData:
    with fsspec.open(uri, "rb", **dict(storage_options)) as handle:
        return pq.ParquetFile(handle).metadata


def read_shard(
    shard: Shard, columns: Sequence[str], storage_options: Mapping[str, str]
) -> pa.Table:
    """Only this shard's row groups and only `columns`."""
    tables = []
    for part in shard.parts:
        with fsspec.open(part.uri, "rb", **dict(storage_options)) as handle:
            tables.append(
                pq.ParquetFile(handle).read_row_groups(list(part.row_groups), columns=list(columns))
            )
    return pa.concat_tables(tables) if tables else pa.table({name: [] for name in columns})


_PREDICTORS: dict[tuple, object] = {}


def _predictor(model: ModelRef):
    """The compiled model, loaded once per worker process and verified against its checksum."""
    card = model.store.card(model.dataset, model.version)
    key = (model.store.root, model.dataset, model.version, card.checksum)
    if key not in _PREDICTORS:
        stored = model.store.load(model.dataset, model.version)
        _PREDICTORS[key] = (stored.card, _compile(stored.model_json))
    return _PREDICTORS[key]


def _compile(model_json: bytes):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model_json))
    return booster


def predict_probability(compiled, X: np.ndarray) -> tuple[np.ndarray, str]:
    """Probabilities of the positive class, and the device that computed them."""
    import xgboost as xgb

    if len(X) == 0:
        return np.empty(0, dtype=np.float32), "cpu"
    matrix = xgb.DMatrix(X, missing=np.nan, feature_names=compiled.feature_names)
    return compiled.predict(matrix).astype(np.float32), "cpu"


def score_rows(
    rows: pa.Table, models: Sequence[ModelRef], ds: str, run_id: str
) -> tuple[pa.Table, str]:
    """Predictions of every model for `rows` (one row per input row per model)."""
    outputs, device = [], "cpu"
    now = datetime.now(UTC)
    for model in models:
        card, compiled = _predictor(model)
        X = feature_matrix(rows, card.feature_spec)
        scores, device = predict_probability(compiled, X)
        n = len(scores)
        outputs.append(
            pa.Table.from_pydict(
                {
                    "_row_id": rows.column("_row_id"),
                    "ds": [ds] * n,
                    "model_version": [model.version] * n,
                    "role": [model.role] * n,
                    "score": scores,
                    "label": (scores >= 0.5).astype(np.int8),
                    "_run_id": [run_id] * n,
                    "_scored_at": [now] * n,
                },
                schema=PREDICTIONS_SCHEMA,
            )
        )
    if not outputs:
        return PREDICTIONS_SCHEMA.empty_table(), device
    return pa.concat_tables(outputs), device


@step(retries=2)
def score_shard(
    shard: Shard,
    models: Sequence[ModelRef],
    ds: str,
    run_id: str,
    storage_options: Mapping[str, str],
) -> ShardScores:
    """Read one shard (feature columns and `_row_id` only) and score it with every model."""
    started = time.perf_counter()
    cards = [_predictor(model)[0] for model in models]
    columns = sorted({"_row_id", *(name for card in cards for name in card.feature_spec.names)})
    rows = read_shard(shard, columns, storage_options)
    predictions, device = score_rows(rows, models, ds, run_id)
    return ShardScores(
        shard.index, rows.num_rows, time.perf_counter() - started, device, predictions
    )


def predictions_of(results: Sequence[ShardScores], version: str) -> pa.Table:
    """Every shard's predictions of one model version."""
    tables = [
        result.predictions.filter(pc.equal(result.predictions["model_version"], version))
        for result in results
    ]
    return pa.concat_tables(tables) if tables else PREDICTIONS_SCHEMA.empty_table()


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
    the predictions table with all shards' rows in one commit. Returns versions written."""
    return {
        f"predictions@{model.version}": lake.replace_slice(
            "predictions",
            dataset,
            predictions_of(results, model.version),
            {"ds": ds, "model_version": model.version},
            run_id=run_id,
            partition_by=("ds", "model_version"),
        )
        for model in models
    }


def shard_summary(results: Sequence[ShardScores], seconds: float) -> dict:
    """What the ledger and the UI show of a scoring pass."""
    rows = sum(result.rows for result in results)
    return {
        "rows": rows,
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
        "shards": [
            {"shard": r.shard, "rows": r.rows, "seconds": round(r.seconds, 3), "device": r.device}
            for r in results
        ],
    }


@step
def resolve_models(store: ModelStore, dataset: str) -> list[ModelRef]:
    """The champion, then the challenger if one is named: the models a day is scored with."""
    aliases = store.aliases(dataset)
    if "champion" not in aliases:
        raise LookupError(f"no champion model for {dataset}: train one first")
    refs = [ModelRef(dataset, aliases["champion"], "champion", store)]
    challenger = aliases.get("challenger")
    if challenger and challenger != aliases["champion"]:
        refs.append(ModelRef(dataset, challenger, "challenger", store))
    return refs
