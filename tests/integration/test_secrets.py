"""No secret is stored: credentials planted in the settings reach neither the Prefect API
(flow runs, task runs, logs, artifacts, events) nor the lake, the reports or the ledger."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cli_on_session_cluster")]

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))


def _everything_the_api_holds(api: str) -> str:
    """Flow runs (with parameters), task runs, logs, artifacts and events, as JSON text."""
    texts = []
    with httpx.Client(base_url=api, timeout=60) as client:
        for route in (
            "/flow_runs/filter",
            "/task_runs/filter",
            "/logs/filter",
            "/artifacts/filter",
        ):
            offset = 0
            while True:
                page = client.post(route, json={"limit": 200, "offset": offset})
                page.raise_for_status()
                texts.append(page.text)
                if len(page.json()) < 200:
                    break
                offset += 200
        events = client.post("/events/filter", json={"limit": 50})
        events.raise_for_status()
        texts.append(events.text)
        next_page = events.json().get("next_page")
        while next_page:
            page = client.get(next_page)
            page.raise_for_status()
            texts.append(page.text)
            next_page = page.json().get("next_page")
    return "\n".join(texts)


def _files_containing(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_a_planted_secret_is_nowhere_after_a_day(tmp_path, prefect_api):
    secret = f"tw-secret-{uuid.uuid4().hex}"
    home = tmp_path / "home"
    env = os.environ | {
        "TIDEWATER_HOME": str(home),
        "PREFECT_API_URL": prefect_api,
        "TIDEWATER_DASK_WORKERS": "1",
        # local stores ignore this option; remote ones would receive it
        "TIDEWATER_STORAGE_OPTIONS": json.dumps({"AWS_SECRET_ACCESS_KEY": secret}),
        "TIDEWATER_ALERT_WEBHOOK_URL": f"http://127.0.0.1:9/{secret}",
    }
    for args in (["land", "adult", "--start", "2024-05-01", "--days", "2"],
                 ["run", "adult", "--ds", "2024-05-02", "-v"]):  # fmt: skip
        done = subprocess.run([TIDEWATER, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert secret not in done.stdout + done.stderr

    ran = _everything_the_api_holds(prefect_api)
    assert "pipeline-adult-2024-05-02" in ran and "score-shard" in ran  # the search saw the run
    assert re.search(r"adult ds=2024-05-02: \d+ landed", ran)  # ...and its INFO logs
    assert secret not in ran
    assert _files_containing(home, secret.encode()) == []
