"""The one settings object: read from `TIDEWATER_*` environment variables, validated once
at the entry point (CLI, deployment) and passed down explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where state lives and how the pipeline runs. Environments swap these, never code.

    Every location is a URI (a local path or e.g. `s3://bucket/prefix`); those left unset
    default to folders under `home`.
    """

    model_config = SettingsConfigDict(env_prefix="TIDEWATER_", frozen=True, extra="forbid")

    home: Path = Field(default=Path(".tidewater"), description="embedded state folder")
    landing_uri: str = ""
    lake_uri: str = ""
    reports_uri: str = ""
    models_uri: str = ""
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="fsspec / delta-rs options for remote URIs (JSON)"
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
    drift_retrain_share: float = Field(default=0.3, gt=0.0, le=1.0)
    monitor_max_rows: int = Field(default=100_000, ge=1000)
    bootstrap_min_rows: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _default_locations(self) -> Settings:
        home = self.home.expanduser().absolute()
        defaults = {
            "home": home,
            "landing_uri": self.landing_uri or str(home / "landing"),
            "lake_uri": self.lake_uri or str(home / "lake"),
            "reports_uri": self.reports_uri or str(home / "reports"),
            "models_uri": self.models_uri or str(home / "models"),
        }
        for name, value in defaults.items():
            object.__setattr__(self, name, value)
        return self
