"""Which day a run processes: the one it is given, else the day before its scheduled start;
subflows that share their parent's heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.settings import get_current_settings

from flows.resources import scheduled_day, subflows_on_this_heartbeat


def test_a_given_day_is_the_day():
    assert scheduled_day("2024-03-05", datetime(2030, 1, 1, tzinfo=UTC)) == "2024-03-05"


def test_a_scheduled_run_processes_the_day_before_its_start():
    assert scheduled_day(None, datetime(2024, 3, 6, 2, 0, tzinfo=UTC)) == "2024-03-05"
    assert scheduled_day("", datetime(2024, 3, 1, 0, 0, tzinfo=UTC)) == "2024-02-29"  # leap day
    assert scheduled_day(None, datetime(2025, 1, 1, 23, 59, tzinfo=UTC)) == "2024-12-31"


def test_subflows_in_the_block_send_no_heartbeat_and_the_parent_still_does(prefect_api):
    def heartbeat() -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    @flow
    def child() -> int | None:
        return heartbeat()

    @flow
    def parent() -> tuple:
        before = child()
        with subflows_on_this_heartbeat():
            inside = child()
        return before, inside, heartbeat()

    before, inside, parent_after = parent()
    assert before == parent_after and before is not None
    assert inside is None
