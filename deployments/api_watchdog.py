"""Ends a CLI command at once when its Prefect API is gone.

Prefect's client retries every call for minutes when the server stops answering, and a run
would end only after ~300 lines of tracebacks. The watchdog asks the API's health endpoint
every `POLL_SECONDS`; when connections are refused (or cannot be made) for `GONE_AFTER`
seconds it prints one line saying so and ends the process with exit code 1. A slow or busy
server (timeouts, 5xx) is alive: only a server that no longer accepts connections is gone.

Nothing is lost by ending there: what a stage committed stays, and a stage that had begun
reads `crashed` in the ledger once this process is gone, so the next run reruns it.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

POLL_SECONDS = 1.0
GONE_AFTER = 8.0


@functools.cache
def _client(timeout: float):
    """One HTTP client per timeout, its connection kept alive between polls (a client per
    poll built an SSL context each time: 4 s of CPU in a 35 s run on 2 cores)."""
    import httpx

    return httpx.Client(timeout=timeout)


def api_answers(api_url: str, timeout: float = 2.0) -> bool:
    """False when the API refuses or cannot take a connection; True otherwise (an answer,
    whatever its status, or a timeout: a busy server is not a dead one)."""
    import httpx

    try:
        _client(timeout).get(f"{api_url.rstrip('/')}/health")
    except (httpx.ConnectError, httpx.RemoteProtocolError):
        return False
    except httpx.HTTPError:
        return True
    return True


def _end_process(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(1)


@contextmanager
def exit_when_api_gone(
    api_url: str,
    message: str,
    *,
    answers: Callable[[str], bool] = api_answers,
    end: Callable[[str], None] = _end_process,
) -> Iterator[None]:
    """While the block runs, end the process with `message` once `api_url` has refused
    connections for GONE_AFTER seconds (`answers` and `end` are the check and the ending)."""
    done = threading.Event()

    def watch() -> None:
        down_since: float | None = None
        while not done.wait(POLL_SECONDS):
            if answers(api_url):
                down_since = None
                continue
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since >= GONE_AFTER and not done.is_set():
                end(message)
                return

    watcher = threading.Thread(target=watch, name="prefect-api-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
