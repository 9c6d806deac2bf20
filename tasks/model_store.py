"""The model store: versions of a dataset's model as XGBoost JSON plus a card, never pickle.

Layout under the store root (a local folder or any fsspec URI):
`{dataset}/{version}/model.json` (XGBoost JSON), `card.json` (features, training data
version, metrics, checksum), `reference.parquet` (the reference window drift is measured
against), `profile.json` (the reference profile of full-data drift; absent for older
models), and `{dataset}/aliases.json` naming the champion (and later a challenger).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import pandas as pd

from reports.profile import ReferenceProfile
from tasks import step
from tasks.features import FeatureSpec

_VERSION = re.compile(r"^v(\d+)$")


class ModelIntegrityError(RuntimeError):
    """A stored model's bytes do not match the checksum its card records."""


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

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec.from_json(self.features)


@dataclass(frozen=True)
class StoredModel:
    card: ModelCard
    model_json: bytes


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelStore:
    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    def _locate(self, *parts: str):
        """The filesystem and the path of `parts` under the store root."""
        fs, root = fsspec.core.url_to_fs(self.root, **dict(self.storage_options))
        return fs, "/".join([root.rstrip("/"), *parts])

    def versions(self, dataset: str) -> list[str]:
        """Stored versions of `dataset`'s model, oldest first."""
        fs, path = self._locate(dataset)
        if not fs.isdir(path):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        found = [name for name in names if _VERSION.match(name)]
        return sorted(found, key=lambda name: int(_VERSION.match(name).group(1)))

    def next_version(self, dataset: str) -> str:
        versions = self.versions(dataset)
        last = int(_VERSION.match(versions[-1]).group(1)) if versions else 0
        return f"v{last + 1}"

    def save(
        self,
        card_fields: dict[str, Any],
        model_json: bytes,
        reference: pd.DataFrame,
        profile: ReferenceProfile | None = None,
    ) -> ModelCard:
        """Store a new version (with its reference `profile` when given); the card records
        the model's checksum. Returns the card."""
        dataset = card_fields["dataset"]
        version = self.next_version(dataset)
        card = ModelCard(**card_fields, version=version, checksum=checksum(model_json))
        fs, folder = self._locate(dataset, version)
        fs.makedirs(folder, exist_ok=True)
        buffer = io.BytesIO()
        reference.to_parquet(buffer, index=False)
        fs.pipe_file(f"{folder}/reference.parquet", buffer.getvalue())
        if profile is not None:
            fs.pipe_file(f"{folder}/profile.json", json.dumps(profile.to_json()).encode())
        fs.pipe_file(f"{folder}/model.json", model_json)
        # The card goes last: a version without a card is incomplete and never loaded.
        fs.pipe_file(f"{folder}/card.json", json.dumps(asdict(card), indent=2).encode())
        return card

    def card(self, dataset: str, version: str) -> ModelCard:
        fs, path = self._locate(dataset, version, "card.json")
        if not fs.exists(path):
            raise FileNotFoundError(f"no model {dataset} {version} in {self.root}")
        return ModelCard(**json.loads(fs.cat_file(path)))

    def load(self, dataset: str, version: str) -> StoredModel:
        """The model's JSON bytes, verified against the card's checksum."""
        card = self.card(dataset, version)
        fs, path = self._locate(dataset, version, "model.json")
        model_json = fs.cat_file(path)
        if checksum(model_json) != card.checksum:
            raise ModelIntegrityError(
                f"model {dataset} {version}: model.json checksum {checksum(model_json)[:12]} "
                f"does not match the card's {card.checksum[:12]}"
            )
        return StoredModel(card=card, model_json=model_json)

    def reference(self, dataset: str, version: str) -> pd.DataFrame:
        fs, path = self._locate(dataset, version, "reference.parquet")
        return pd.read_parquet(io.BytesIO(fs.cat_file(path)))

    def profile(self, dataset: str, version: str) -> ReferenceProfile | None:
        """The version's reference profile for full-data drift; None for a model stored
        without one (older versions)."""
        fs, path = self._locate(dataset, version, "profile.json")
        if not fs.exists(path):
            return None
        return ReferenceProfile.from_json(json.loads(fs.cat_file(path)))

    def aliases(self, dataset: str) -> dict[str, str]:
        fs, path = self._locate(dataset, "aliases.json")
        return json.loads(fs.cat_file(path)) if fs.exists(path) else {}

    def alias(self, dataset: str, name: str) -> str | None:
        return self.aliases(dataset).get(name)

    def set_alias(self, dataset: str, name: str, version: str) -> None:
        self.card(dataset, version)
        fs, path = self._locate(dataset, "aliases.json")
        aliases = self.aliases(dataset) | {name: version}
        fs.pipe_file(path, json.dumps(aliases, indent=2).encode())


@step(retries=2)
def load_reference(store: ModelStore, dataset: str, version: str) -> pd.DataFrame:
    """The reference window recorded with a model version."""
    return store.reference(dataset, version)


@step(retries=2)
def champion_version(store: ModelStore, dataset: str) -> str | None:
    return store.alias(dataset, "champion")
