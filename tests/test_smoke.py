"""Every flow, deployment and CLI command loads."""

from __future__ import annotations

import importlib
from pathlib import Path

from prefect.flows import Flow

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ["ingest", "validate", "train", "score", "monitor", "pipeline", "retrain", "shadow"]


def test_every_flow_loads():
    for name in FLOWS:
        flow = getattr(importlib.import_module(f"flows.{name}"), name)
        assert isinstance(flow, Flow) and flow.name == name


def test_every_registered_dataset_gets_a_daily_and_a_retrain_deployment():
    from datasets import dataset_names
    from deployments.deploy import build_deployments

    deployments = {d.name: d for d in build_deployments(dataset_names())}
    for dataset in dataset_names():
        daily, retrain = deployments[f"{dataset}-daily"], deployments[f"{dataset}-retrain"]
        assert (daily.flow_name, retrain.flow_name) == ("pipeline", "retrain")
        assert [s.schedule.cron for s in daily.schedules] == ["0 2 * * *"]
        assert not retrain.schedules
        [trigger] = retrain.triggers
        assert trigger.expect == {"tidewater.retrain.requested"}
        assert trigger.match.get("prefect.resource.id") == [f"tidewater.dataset.{dataset}"]
    for deployment in deployments.values():
        module, name = deployment.entrypoint.rsplit(".", 1)
        flow = getattr(importlib.import_module(module), name)
        assert set(deployment.parameters) <= set(flow.parameters.properties)


def test_flow_parameters_are_plain_values_a_ui_form_can_render():
    for name in FLOWS:
        flow = getattr(importlib.import_module(f"flows.{name}"), name)
        for parameter in flow.parameters.properties.values():
            types = {t.get("type") for t in parameter.get("anyOf", [parameter])}
            assert types <= {"string", "number", "integer", "boolean", "array", "null"}, parameter


def test_the_cli_loads():
    from typer.testing import CliRunner

    from deployments.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "land", "run", "train", "status", "serve", "deploy", "doctor"):
        assert command in result.output
