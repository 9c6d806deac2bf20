"""The one settings object: read from `TIDEWATER_*` environment variables once per process
(CLI, Prefect worker, deployment run), validated there, and never passed as a flow parameter,
so nothing of it (credentials least of all) is stored in Prefect's database."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    Secret,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where state lives and how the pipeline runs. Environments swap these, never code.

    Every location is a URI (a local path or e.g. `s3://bucket/prefix`); those left unset
    default to folders under `home`. Secrets (`storage_options`, `alert_webhook_url`) are
    `Secret` values: they print as `**********` and are unwrapped only where they are used.
    """

    model_config = SettingsConfigDict(env_prefix="TIDEWATER_", frozen=True, extra="forbid")

    home: Path = Field(default=Path(".tidewater"), description="embedded state folder")
    landing_uri: str = ""
    lake_uri: str = ""
    reports_uri: str = ""
    models_uri: str = Field(default="", description="artifact root of the model registry")
    tracking_uri: str = Field(
        default="", description="MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI)"
    )
    storage_options: Secret[dict[str, str]] = Field(
        default=Secret({}),
        description="S3 options for remote URIs (JSON, delta-rs's AWS_* or s3fs's spelling)",
    )
    storage_block: str | None = Field(
        default=None,
        pattern=r"^(secret|aws-credentials)/[^/]+$",
        description="a Prefect block holding the store's credentials: `aws-credentials/NAME` "
        "(an AWS Credentials block) or `secret/NAME` (a Secret block of storage options, JSON)",
    )
    reports_url: str | None = Field(
        default=None, description="base URL under which reports_uri is served (for links)"
    )

    dask_address: str | None = Field(default=None, description="existing Dask scheduler")
    dask_workers: int | None = Field(default=None, ge=1, description="default: one per core")
    dask_threads_per_worker: int = Field(default=1, ge=1)
    dask_rmm_pool_size: str | None = Field(default=None, description="e.g. '20GB' per GPU")
    dask_device_memory_limit: str | None = Field(default=None, description="GPU spill limit")
    device: Literal["auto", "cpu", "gpu"] = "auto"
    lake_row_group_rows: int = Field(default=128 * 1024, ge=1024)
    shard_rows: int = Field(default=1_000_000, ge=1)
    shard_bytes: int = Field(default=256 * 2**20, ge=1)
    score_batch_rows: int = Field(default=1 << 20, ge=1)
    shard_retries: int = Field(default=2, ge=0)

    max_quarantine_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    duplicate_files: Literal["skip", "ingest"] = Field(
        default="skip",
        description="a landed file whose bytes equal another's of the day, or a file ingested "
        "on another day: `skip` ingests one copy and records the others in the ledger; "
        "`ingest` reads every copy",
    )
    drift_retrain_share: float = Field(default=0.3, gt=0.0, le=1.0)
    retrain_policy: dict[str, dict[str, int | bool]] = Field(
        default={},
        description="RetrainPolicy fields per dataset, `*` for all (JSON), e.g. "
        '{"*": {"breach_days": 2, "window_days": 3}, "adult": {"cooldown_days": 14}}',
    )
    fairness_policy: dict[str, dict[str, float | int | str]] = Field(
        default={},
        description="FairnessPolicy fields per dataset, `*` for all (JSON), e.g. "
        '{"*": {"min_group_size": 200}, "adult": {"dp_ratio_min": 0.8}}',
    )
    gate_policy: dict[str, dict[str, float | int | list[str]]] = Field(
        default={},
        description="GatePolicy fields per dataset, `*` for all (JSON): how much worse than "
        'the champion a retrained candidate may be, e.g. {"*": {"max_auc_drop": 0.005}}',
    )
    shadow_policy: dict[str, dict[str, float | int | list[str]]] = Field(
        default={},
        description="ShadowPolicy fields per dataset, `*` for all (JSON): the challenger's "
        'shadow window and promotion rule, e.g. {"adult": {"shadow_days": 5}}',
    )
    monitor_max_rows: int = Field(
        default=25_000,
        ge=1000,
        description="rows of each side in Evidently's report (the verdict reads every row): "
        "its tests gain little beyond a few times the reference, and each 100k rows cost about "
        "3 s on a worker",
    )
    bootstrap_min_rows: int = Field(default=1000, ge=1)
    train_window_days: int = Field(default=7, ge=1, description="default training window")
    dask_train_min_rows: int = Field(
        default=2_000_000, ge=1, description="a training on this many rows runs on Dask"
    )
    min_holdout_auc: float = Field(
        default=0.6, ge=0.0, le=1.0, description="a model below it on its holdout is refused"
    )

    work_pool: str = Field(default="tidewater", description="Prefect work pool of deployments")
    scoring_slots: int = Field(
        default=3, ge=1, description="pipeline runs that score at once (a backfill's: one fewer)"
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="where `tidewater deploy`'s alert automations post"
    )

    @field_validator(
        "storage_options",
        "retrain_policy",
        "fairness_policy",
        "gate_policy",
        "shadow_policy",
        mode="before",
    )
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("retrain_policy", "fairness_policy", "gate_policy", "shadow_policy")
    @classmethod
    def _valid_policies(cls, value: dict[str, dict[str, Any]], info: ValidationInfo) -> Any:
        for name in value:
            try:
                _policy(info.field_name, value, name)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{info.field_name.replace('_', ' ')} {name!r}: {error}") from None
        return value

    def retrain_policy_for(self, dataset: str):
        """The dataset's `RetrainPolicy`: defaults, then `*`, then the dataset's own fields."""
        return _policy("retrain_policy", self.retrain_policy, dataset)

    def fairness_policy_for(self, dataset: str):
        """The dataset's `FairnessPolicy`: defaults, then `*`, then the dataset's fields."""
        return _policy("fairness_policy", self.fairness_policy, dataset)

    def gate_policy_for(self, dataset: str):
        """The dataset's `GatePolicy` (a retrained candidate against the champion)."""
        return _policy("gate_policy", self.gate_policy, dataset)

    def shadow_policy_for(self, dataset: str):
        """The dataset's `ShadowPolicy` (the challenger's shadow window and promotion)."""
        return _policy("shadow_policy", self.shadow_policy, dataset)

    @model_validator(mode="after")
    def _default_locations(self) -> Settings:
        home = self.home.expanduser().absolute()
        defaults = {
            "home": home,
            "landing_uri": self.landing_uri or str(home / "landing"),
            "lake_uri": self.lake_uri or str(home / "lake"),
            "reports_uri": self.reports_uri or str(home / "reports"),
            "models_uri": self.models_uri or str(home / "models"),
            # Production names its MLflow server the standard way; else an embedded SQLite file.
            "tracking_uri": self.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI", "")
            or f"sqlite:///{home / 'mlflow.db'}",
        }
        for name, value in defaults.items():
            object.__setattr__(self, name, value)
        return self

    @model_validator(mode="after")
    def _storage_can_work(self) -> Settings:
        """Refuse at start what no store can work with (unsafe rename, an unknown option)."""
        from tasks.storage import Store

        Store.from_options(self.storage_options.get_secret_value())
        return self


def _policy(field: str, configured: dict[str, dict[str, Any]], dataset: str):
    """The policy a `*_policy` setting gives `dataset`: defaults, then `*`, then its own."""
    from reports.fairness import FairnessPolicy
    from reports.gate import GatePolicy
    from reports.policy import RetrainPolicy
    from reports.shadow import ShadowPolicy

    policy = {
        "retrain_policy": RetrainPolicy,
        "fairness_policy": FairnessPolicy,
        "gate_policy": GatePolicy,
        "shadow_policy": ShadowPolicy,
    }[field]
    return policy(**configured.get("*", {}) | configured.get(dataset, {}))


_process_settings: Settings | None = None


def current_settings() -> Settings:
    """This process's settings: the ones its entry point installed, else read from the
    environment on first use."""
    global _process_settings
    if _process_settings is None:
        _process_settings = Settings()
    return _process_settings


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Make `settings` this process's settings for the duration (entry points and tests)."""
    global _process_settings
    previous, _process_settings = _process_settings, settings
    try:
        yield settings
    finally:
        _process_settings = previous
