"""A daily run's process imports what every run needs, not the libraries that take seconds
to import and serve only some days or other processes: Evidently, fairlearn and
scikit-learn run in the monitor's tasks on the workers, XGBoost where a model is trained."""

from __future__ import annotations

import json
import subprocess
import sys

ELSEWHERE = ("evidently", "fairlearn", "sklearn", "scipy.stats", "xgboost")


def test_the_cli_and_the_pipeline_import_no_report_or_training_library():
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\nimport deployments.cli, flows.pipeline\n"
            f"print(json.dumps([name for name in {ELSEWHERE!r} if name in sys.modules]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(imported.stdout.splitlines()[-1]) == []
