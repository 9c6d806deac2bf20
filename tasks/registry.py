"""The model registry: MLflow's, one registered model per dataset, versions logged as
XGBoost JSON (never pickle) with their card, reference window and reference profile.

Each training is one MLflow run in the experiment `tidewater-{dataset}` (its artifacts under
`artifact_root`): params, metrics, lineage tags (silver and labels Delta versions, the ds
window), the artifacts `card.json`, `reference.parquet`, `profile.json`, and a logged model
(MLflow 3 `LoggedModel`) holding `model.json` plus its `MLmodel` file. Registering makes a
version of `tidewater-{dataset}`; MLflow numbers versions in its database, so concurrent
trainings never share one. Aliases `champion`/`challenger` are MLflow aliases.

Bytes go through fsspec with the store's options (the same on s3:// as locally), and every
load is checked against the sha256 checksum the version's tags hold. MLflow is imported
lazily: it costs seconds to import and scoring workers never need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from reports.profile import ReferenceProfile
from tasks import step
from tasks.features import FeatureSpec
from tasks.storage import LOCAL, Store

# MLflow sends usage telemetry by default; nothing may reach the internet at run time.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PREFIX = "tidewater"
CHECKSUM_TAG = "tidewater.checksum"
MODEL_JSON_TAG = "tidewater.model_json"
RUN_ARTIFACTS_TAG = "tidewater.run_artifacts"
MODEL_FILE = "model.json"

T = TypeVar("T")


class ModelIntegrityError(RuntimeError):
    """A stored model's bytes do not match the checksum the registry holds."""


@dataclass(frozen=True)
class ModelCard:
    dataset: str
    version: str
    created_at: str
    objective: str
    features: dict
    target: str
    positive_label: str
    checksum: str
    trained_on: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    run_id: str = ""
    tags: dict = field(default_factory=dict)

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec.from_json(self.features)


_CARD_FIELDS = {f.name for f in fields(ModelCard)}


@dataclass(frozen=True)
class StoredModel:
    card: ModelCard
    model_json: bytes


@dataclass(frozen=True)
class TrainingRun:
    """One logged training: its MLflow run and logged model (`models:/m-...`)."""

    dataset: str
    run_id: str
    model_uri: str
    checksum: str


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(uri: str, store: Store) -> bytes:
    fs, path = store.filesystem(uri)
    return fs.cat_file(path)


def read_verified_model(uri: str, expected: str, store: Store, name: str = "") -> bytes:
    """The model JSON at `uri`, checked against the checksum the registry holds."""
    data = read_bytes(uri, store)
    if checksum(data) != expected:
        raise ModelIntegrityError(
            f"model {name or uri}: {MODEL_FILE} checksum {checksum(data)[:12]} does not "
            f"match the registry's {expected[:12]}"
        )
    return data


def lineage_tags(trained_on: Mapping[str, Any]) -> dict[str, str]:
    """Tags naming the data a model was trained on: silver table and Delta version, labels
    version, ds window."""
    tags = {}
    if "table" in trained_on:
        tags["tidewater.silver_table"] = str(trained_on["table"])
    if "version" in trained_on:
        tags["tidewater.silver_version"] = str(trained_on["version"])
    labels = trained_on.get("labels") or {}
    if isinstance(labels, Mapping) and labels.get("version") is not None:
        tags["tidewater.labels_version"] = str(labels["version"])
    days = list(trained_on.get("ds") or [])
    if days:
        tags["tidewater.window"] = f"{min(days)}..{max(days)}"
    return tags


def _is_locked(error: BaseException) -> bool:
    return "database is locked" in str(error)


def _retry_locked(call: Callable[[], T], attempts: int = 8) -> T:
    """SQLite answers "database is locked" when several processes write at once (MLflow
    already waits 20 s per statement); retry only that error, with backoff."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            if not _is_locked(error) or attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")


_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client_for(tracking_uri: str):
    """One MlflowClient per tracking URI (never the global tracking URI: several registries
    may live in one process). The first use of a SQLite file creates its tables."""
    with _CLIENTS_LOCK:
        if tracking_uri not in _CLIENTS:
            from mlflow import MlflowClient

            if tracking_uri.startswith("sqlite:///"):
                Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            _CLIENTS[tracking_uri] = _retry_locked(
                lambda: MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            )
        return _CLIENTS[tracking_uri]


def _version_number(version: str) -> str:
    number = version.removeprefix("v")
    if not number.isdigit():
        raise FileNotFoundError(f"no model version {version!r}: versions look like v1, v2")
    return number


@dataclass(frozen=True)
class ModelRegistry:
    tracking_uri: str
    artifact_root: str
    store: Store = LOCAL

    @property
    def client(self):
        return _client_for(self.tracking_uri)

    def open_in_background(self) -> threading.Thread | None:
        """Open the tracking store on a daemon thread: importing MLflow and opening its
        store take 4–6 s of Python, which a pipeline overlaps with ingesting its day. Ingest
        loses the GIL for part of it, but the lookup before scoring no longer waits (about
        2 s of a 37 s run). A failure here is the next use's to raise. A SQLite store not
        created yet is left to its first use (None): MLflow creates its tables in many
        steps, and a run failing meanwhile, a full disk say, would leave them half made."""
        database = self.tracking_uri.removeprefix("sqlite:///")
        if database != self.tracking_uri and not Path(database).exists():
            return None

        def open_store() -> None:
            with contextlib.suppress(Exception):
                _client_for(self.tracking_uri)

        thread = threading.Thread(target=open_store, name="open-registry", daemon=True)
        thread.start()
        return thread

    def model_name(self, dataset: str) -> str:
        return f"{PREFIX}-{dataset}"

    def experiment_name(self, dataset: str) -> str:
        return f"{PREFIX}-{dataset}"

    # --- writing -------------------------------------------------------------------------

    def _experiment_id(self, dataset: str) -> str:
        name = self.experiment_name(dataset)
        found = _retry_locked(lambda: self.client.get_experiment_by_name(name))
        if found is not None:
            return found.experiment_id
        location = f"{self.artifact_root.rstrip('/')}/{dataset}"
        try:
            return _retry_locked(
                lambda: self.client.create_experiment(name, artifact_location=location)
            )
        except Exception as error:
            if "RESOURCE_ALREADY_EXISTS" not in str(error) and "already exists" not in str(error):
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def _ensure_registered_model(self, dataset: str) -> str:
        name = self.model_name(dataset)
        try:
            _retry_locked(lambda: self.client.create_registered_model(name))
        except Exception as error:
            if "RESOURCE_ALREADY_EXISTS" not in str(error) and "already exists" not in str(error):
                raise
        return name

    def _put(self, uri: str, data: bytes) -> None:
        fs, path = self.store.filesystem(uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)

    def log_training(
        self,
        card_fields: dict[str, Any],
        model_json: bytes,
        reference: pd.DataFrame,
        profile: ReferenceProfile | None,
        *,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> TrainingRun:
        """One MLflow run holding the training: params, metrics, lineage tags, the card,
        reference window and profile as artifacts, and the model as XGBoost JSON."""
        from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag

        dataset = card_fields["dataset"]
        client = self.client
        experiment_id = self._experiment_id(dataset)
        digest = checksum(model_json)
        run_tags = {
            "tidewater.dataset": dataset,
            CHECKSUM_TAG: digest,
            **lineage_tags(card_fields.get("trained_on") or {}),
            **dict(tags or {}),
        }
        run = _retry_locked(
            lambda: client.create_run(
                experiment_id, run_name=f"train-{dataset}", tags=dict(run_tags)
            )
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            all_metrics = {**(card_fields.get("metrics") or {}), **dict(metrics or {})}
            _retry_locked(
                lambda: client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in all_metrics.items()],
                    params=[Param(k, str(v)) for k, v in (card_fields.get("params") or {}).items()],
                    tags=[RunTag(RUN_ARTIFACTS_TAG, run.info.artifact_uri)],
                )
            )
            artifacts = run.info.artifact_uri.rstrip("/")
            card = {k: v for k, v in card_fields.items() if k in _CARD_FIELDS}
            card |= {"checksum": digest, "run_id": run_id}
            buffer = io.BytesIO()
            reference.to_parquet(buffer, index=False)
            self._put(f"{artifacts}/reference.parquet", buffer.getvalue())
            if profile is not None:
                self._put(f"{artifacts}/profile.json", json.dumps(profile.to_json()).encode())
            self._put(f"{artifacts}/card.json", json.dumps(card, indent=2).encode())

            logged = _retry_locked(
                lambda: client.create_logged_model(
                    experiment_id,
                    name="model",
                    source_run_id=run_id,
                    tags={CHECKSUM_TAG: digest},
                    model_type="xgboost",
                )
            )
            self._write_model_files(logged.artifact_location, model_json)
            _retry_locked(
                lambda: client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
            )
            model_json_uri = f"{logged.artifact_location.rstrip('/')}/{MODEL_FILE}"
            _retry_locked(lambda: client.set_tag(run_id, MODEL_JSON_TAG, model_json_uri))
            _retry_locked(lambda: client.set_terminated(run_id, "FINISHED"))
        except BaseException:
            _retry_locked(lambda: client.set_terminated(run_id, "FAILED"))
            raise
        return TrainingRun(dataset, run_id, f"models:/{logged.model_id}", digest)

    def _write_model_files(self, location: str, model_json: bytes) -> None:
        """`model.json` exactly as given, beside the `MLmodel` file of MLflow's xgboost
        flavor (so `mlflow.xgboost.load_model` works too); no pickle anywhere."""
        import xgboost as xgb
        from mlflow.xgboost import save_model

        with tempfile.TemporaryDirectory() as folder:
            booster = xgb.Booster()
            booster.load_model(bytearray(model_json))
            local = Path(folder) / "model"
            save_model(
                booster,
                str(local),
                model_format="json",
                pip_requirements=[f"xgboost=={xgb.__version__}"],
            )
            (local / MODEL_FILE).write_bytes(model_json)
            for path in sorted(local.rglob("*")):
                if path.is_file():
                    relative = path.relative_to(local).as_posix()
                    self._put(f"{location.rstrip('/')}/{relative}", path.read_bytes())

    def register(self, run: TrainingRun, *, tags: Mapping[str, str] | None = None) -> ModelCard:
        """A new version of the dataset's registered model from the run's logged model."""
        name = self._ensure_registered_model(run.dataset)
        client = self.client
        source_run = _retry_locked(lambda: client.get_run(run.run_id))
        version_tags = {k: v for k, v in source_run.data.tags.items() if k.startswith(f"{PREFIX}.")}
        version_tags |= {CHECKSUM_TAG: run.checksum, **dict(tags or {})}
        model_id = run.model_uri.removeprefix("models:/")
        # The logged model's storage location, not its models:/ URI: MLflow's SQL registry
        # resolves that URI through the process-global tracking URI (not this client's).
        logged = _retry_locked(lambda: client.get_logged_model(model_id))
        created = _retry_locked(
            lambda: client.create_model_version(
                name,
                source=logged.artifact_location,
                run_id=run.run_id,
                tags=version_tags,
                model_id=model_id,
                await_creation_for=0,
            )
        )
        return self.card(run.dataset, f"v{created.version}")

    def register_model(
        self,
        card_fields: dict[str, Any],
        model_json: bytes,
        reference: pd.DataFrame,
        profile: ReferenceProfile | None = None,
        *,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelCard:
        """`log_training` then `register`, in one call."""
        run = self.log_training(
            card_fields, model_json, reference, profile, metrics=metrics, tags=tags
        )
        return self.register(run, tags=tags)

    def end_training(
        self,
        run: TrainingRun,
        *,
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Add tags and metrics to a training run (e.g. why a candidate was rejected)."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        _retry_locked(
            lambda: self.client.log_batch(
                run.run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
            )
        )

    # --- reading -------------------------------------------------------------------------

    def _model_version(self, dataset: str, version: str):
        number = _version_number(version)
        try:
            return _retry_locked(
                lambda: self.client.get_model_version(self.model_name(dataset), number)
            )
        except Exception as error:
            if "RESOURCE_DOES_NOT_EXIST" in str(error) or "not found" in str(error).lower():
                raise FileNotFoundError(
                    f"no model {dataset} {version} in the registry {self.tracking_uri}"
                ) from None
            raise

    def versions(self, dataset: str) -> list[str]:
        """Registered versions of `dataset`'s model, oldest first."""
        return [f"v{mv.version}" for mv in self._all_versions(dataset)]

    def _all_versions(self, dataset: str) -> list:
        name = self.model_name(dataset).replace("'", "''")
        found, token = [], None
        while True:
            page = _retry_locked(
                lambda token=token: self.client.search_model_versions(
                    f"name = '{name}'", page_token=token
                )
            )
            found += list(page)
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda mv: int(mv.version))

    def card(self, dataset: str, version: str) -> ModelCard:
        mv = self._model_version(dataset, version)
        tags = dict(mv.tags)
        data = json.loads(read_bytes(self.artifact_uri(mv, "card.json"), self.store))
        data = {k: v for k, v in data.items() if k in _CARD_FIELDS}
        data |= {
            "version": f"v{mv.version}",
            "checksum": tags.get(CHECKSUM_TAG, ""),
            "run_id": mv.run_id or "",
            "tags": tags,
        }
        return ModelCard(**data)

    def artifact_uri(self, mv, name: str) -> str:
        """Where the run of model version `mv` stored the artifact `name`."""
        root = mv.tags.get(RUN_ARTIFACTS_TAG)
        if root is None:
            root = self.client.get_run(mv.run_id).info.artifact_uri
        return f"{root.rstrip('/')}/{name}"

    def locations(self, dataset: str, version: str) -> dict[str, str]:
        """Artifact URIs of a version: model JSON, card, reference, profile, run folder."""
        mv = self._model_version(dataset, version)
        model_json = mv.tags.get(MODEL_JSON_TAG)
        if model_json is None:
            model_json = self.client.get_run(mv.run_id).data.tags[MODEL_JSON_TAG]
        return {
            "model_json": model_json,
            "card": self.artifact_uri(mv, "card.json"),
            "reference": self.artifact_uri(mv, "reference.parquet"),
            "profile": self.artifact_uri(mv, "profile.json"),
            "run": self.artifact_uri(mv, "").rstrip("/"),
            "source": mv.source,
        }

    def load(self, dataset: str, version: str) -> StoredModel:
        """The model's JSON bytes, verified against the registry's checksum."""
        card = self.card(dataset, version)
        uri = self.locations(dataset, version)["model_json"]
        data = read_verified_model(uri, card.checksum, self.store, f"{dataset} {version}")
        return StoredModel(card=card, model_json=data)

    def reference(self, dataset: str, version: str) -> pd.DataFrame:
        uri = self.locations(dataset, version)["reference"]
        return pd.read_parquet(io.BytesIO(read_bytes(uri, self.store)))

    def profile(self, dataset: str, version: str) -> ReferenceProfile | None:
        """The version's reference profile for full-data drift; None if stored without one."""
        return load_profile(self.locations(dataset, version)["profile"], self.store)

    # --- aliases and tags ----------------------------------------------------------------

    def aliases(self, dataset: str) -> dict[str, str]:
        try:
            model = _retry_locked(
                lambda: self.client.get_registered_model(self.model_name(dataset))
            )
        except Exception as error:
            if "RESOURCE_DOES_NOT_EXIST" in str(error) or "not found" in str(error).lower():
                return {}
            raise
        return {alias: f"v{number}" for alias, number in sorted(model.aliases.items())}

    def alias(self, dataset: str, name: str) -> str | None:
        return self.aliases(dataset).get(name)

    def set_alias(self, dataset: str, name: str, version: str) -> None:
        mv = self._model_version(dataset, version)
        _retry_locked(
            lambda: self.client.set_registered_model_alias(
                self.model_name(dataset), name, mv.version
            )
        )

    def delete_alias(self, dataset: str, name: str) -> None:
        """Remove alias `name`; nothing happens if it is not set."""
        if name in self.aliases(dataset):
            _retry_locked(
                lambda: self.client.delete_registered_model_alias(self.model_name(dataset), name)
            )

    def set_version_tags(self, dataset: str, version: str, tags: Mapping[str, str]) -> None:
        mv = self._model_version(dataset, version)
        for key, value in tags.items():
            _retry_locked(
                lambda key=key, value=value: self.client.set_model_version_tag(
                    self.model_name(dataset), mv.version, key, str(value)
                )
            )

    def version_tags(self, dataset: str, version: str) -> dict[str, str]:
        return dict(self._model_version(dataset, version).tags)

    def find_versions(
        self, dataset: str, tags: Mapping[str, str] | None = None, **more: str
    ) -> list[str]:
        """Versions (oldest first) whose tags match every one given."""
        wanted = {**dict(tags or {}), **more}
        return [
            f"v{mv.version}"
            for mv in self._all_versions(dataset)
            if all(mv.tags.get(k) == str(v) for k, v in wanted.items())
        ]


def load_profile(uri: str, store: Store) -> ReferenceProfile | None:
    fs, path = store.filesystem(uri)
    if not fs.exists(path):
        return None
    return ReferenceProfile.from_json(json.loads(fs.cat_file(path)))


def card_fields_of(card: ModelCard) -> dict[str, Any]:
    """A card as the dict `log_training` takes (version, checksum and run left out)."""
    data = asdict(card)
    for name in ("version", "checksum", "run_id", "tags"):
        data.pop(name)
    return data


@step(retries=2)
def load_reference(registry: ModelRegistry, dataset: str, version: str) -> pd.DataFrame:
    """The reference window recorded with a model version."""
    return registry.reference(dataset, version)


@step(retries=2)
def champion_version(registry: ModelRegistry, dataset: str) -> str | None:
    return registry.alias(dataset, "champion")
