"""Every flow and deployment loads."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect.flows import Flow

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ["ingest", "validate", "train", "score", "monitor", "pipeline"]


def test_every_flow_loads():
    for name in FLOWS:
        flow = getattr(importlib.import_module(f"flows.{name}"), name)
        assert isinstance(flow, Flow) and flow.name == name


def test_every_deployment_points_at_a_flow_and_names_its_parameters():
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties)
        for schedule in deployment.get("schedules", []):
            assert len(schedule["cron"].split()) == 5


def test_the_cli_loads():
    from typer.testing import CliRunner

    from deployments.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "land", "run", "train", "status", "serve"):
        assert command in result.output
