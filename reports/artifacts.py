"""Publishing a drift summary as a Prefect markdown artifact."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact


def artifact_key(text: str) -> str:
    """`text` as a Prefect artifact key: lowercase letters, digits and single dashes."""
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not key:
        raise ValueError(f"no artifact key can be made from {text!r}")
    return key


def publish_drift_artifact(markdown: str, key: str) -> None:
    """Create (or add a version of) the markdown artifact `key`, sanitized by `artifact_key`."""
    create_markdown_artifact(markdown=markdown, key=artifact_key(key), description="Drift report")
