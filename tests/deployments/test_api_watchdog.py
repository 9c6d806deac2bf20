"""A command whose Prefect API is gone ends at once, saying so; a busy API is not gone."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import deployments.api_watchdog as watchdog
from deployments.api_watchdog import api_answers, exit_when_api_gone


@pytest.fixture(autouse=True)
def fast_watchdog(monkeypatch):
    monkeypatch.setattr(watchdog, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(watchdog, "GONE_AFTER", 0.3)


def test_an_api_refusing_connections_ends_the_command_with_the_message():
    ended = threading.Event()
    said: list[str] = []

    def end(message: str) -> None:
        said.append(message)
        ended.set()

    started = time.monotonic()
    with exit_when_api_gone("http://x/api", "the API is gone", answers=lambda _: False, end=end):
        assert ended.wait(5)
    assert said == ["the API is gone"]
    assert time.monotonic() - started >= 0.3  # not at the first refused poll


def test_an_api_that_answers_again_in_time_is_not_gone():
    answers = iter([False, False, True] * 100)
    ended: list[str] = []
    with exit_when_api_gone(
        "http://x/api", "gone", answers=lambda _: next(answers), end=ended.append
    ):
        time.sleep(1.0)
    assert ended == []


def test_the_watchdog_stops_with_the_command():
    ended: list[str] = []
    with exit_when_api_gone("http://x/api", "gone", answers=lambda _: False, end=ended.append):
        pass
    time.sleep(0.6)
    assert ended == []


def test_a_closed_port_does_not_answer_and_a_silent_server_does():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert not api_answers(f"http://127.0.0.1:{closed}/api")
    with socket.socket() as busy:  # accepts connections, never replies: busy, not gone
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert api_answers(f"http://127.0.0.1:{busy.getsockname()[1]}/api", timeout=0.3)
