import pytest

from reports import artifacts
from reports.artifacts import artifact_key, publish_markdown


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("drift-adult-2024-01-06", "drift-adult-2024-01-06"),
        ("Drift adult 2024_01_06", "drift-adult-2024-01-06"),
        ("--drift//adult:v3.1--", "drift-adult-v3-1"),
    ],
)
def test_artifact_keys_are_sanitized(text, key):
    assert artifact_key(text) == key


def test_empty_key_is_an_error():
    with pytest.raises(ValueError):
        artifact_key("__")


def test_publish_creates_a_markdown_artifact(monkeypatch):
    calls = []
    monkeypatch.setattr(
        artifacts, "create_markdown_artifact", lambda **kwargs: calls.append(kwargs)
    )
    publish_markdown("# Drift", "Drift adult 2024-01-06", "Drift of adult")
    assert calls == [
        {"markdown": "# Drift", "key": "drift-adult-2024-01-06", "description": "Drift of adult"}
    ]
