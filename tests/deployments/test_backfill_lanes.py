"""The lane protocol on a real Prefect server: a backfill assigns day runs to lanes by tag;
a lane runs its days in order and ends with its backfill; a day whose lane ended before
running it goes to another lane, and one whose lane died under it fails and is marked
crashed instead of staying "running" for ever."""

from __future__ import annotations

import pytest

from deployments.backfill import Backfill, DayRun, LaneDays
from flows import backfill_lane as lanes
from flows.backfill_lane import backfill_lane, create_day_run, lane_run_name, lane_tag
from tasks.lake import Lake

STAGES = ("ingest", "validate", "score", "monitor")


@pytest.fixture
def client(prefect_api):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def a_backfill(days: list[str]) -> Backfill:
    return Backfill(
        "adult", days[0], days[-1], "all", "deployment", 2, [DayRun(ds, STAGES) for ds in days]
    )


def fake_lane(client, backfill: Backfill, lane: str, state):
    """A lane's flow run record in `state` (no process behind it)."""
    return client.create_flow_run(
        backfill_lane,
        name=lane_run_name(backfill.dataset, lane),
        parameters={"dataset": backfill.dataset, "backfill": backfill.id, "lane": lane},
        state=state,
    )


def test_a_lane_runs_its_days_in_order_and_ends_with_its_backfill(settings, client, monkeypatch):
    from prefect.states import Completed

    backfill = a_backfill(["2024-03-01", "2024-03-02", "2024-03-03"])
    mine, other = f"{backfill.id}-1", f"{backfill.id}-2"
    for ds, lane in zip(backfill.days, [mine, other, mine], strict=True):
        create_day_run("adult", ds.ds, list(STAGES), [*backfill.tags_of(ds.ds), lane_tag(lane)])
    ran = []

    def run_day(day_run):
        ran.append(day_run.parameters["ds"])
        client.set_flow_run_state(day_run.id, Completed())
        if len(ran) == 2:  # the backfill ends after this lane's second day
            backfill.record(Lake(str(settings.home / "lake")), "succeeded")

    monkeypatch.setattr(lanes, "run_day", run_day)
    monkeypatch.setattr(lanes, "IDLE_EXIT_SECONDS", 120)  # the record must end it, not this
    backfill.record(Lake(str(settings.home / "lake")), "running")
    assert backfill_lane.fn("adult", backfill.id, mine) == 2
    assert ran == ["2024-03-01", "2024-03-03"]  # its own, oldest first; not the other lane's


def test_a_lane_gives_up_when_nothing_is_assigned_for_a_while(settings, monkeypatch):
    monkeypatch.setattr(lanes, "IDLE_EXIT_SECONDS", 1.0)
    backfill = a_backfill(["2024-03-01"])
    backfill.record(Lake(str(settings.home / "lake")), "running")  # its process died
    assert backfill_lane.fn("adult", backfill.id, f"{backfill.id}-1") == 0


def test_a_day_whose_lane_ended_before_running_it_moves_to_a_new_lane(
    settings, client, monkeypatch
):
    from prefect.states import Completed, Scheduled

    backfill = a_backfill(["2024-03-04"])
    days = LaneDays(backfill, Lake(str(settings.home / "lake")), "backfill-lane/adult-backfill")
    started = []

    def start_lane(lane):
        started.append(lane)
        fake_lane(client, backfill, lane, Scheduled())

    monkeypatch.setattr(days, "_start_lane", start_lane)
    (day,) = backfill.days
    days.start(day)
    assert started == [f"{backfill.id}-1"]
    first = client.read_flow_runs(flow_run_filter=_named(lane_run_name("adult", started[0])))[0]
    client.set_flow_run_state(first.id, Completed(), force=True)  # it idled out meanwhile

    days.poll([day])
    assert started == [f"{backfill.id}-1", f"{backfill.id}-2"]
    moved = client.read_flow_run(day.flow_run_id)
    assert lane_tag(started[1]) in moved.tags and lane_tag(started[0]) not in moved.tags
    assert moved.state.is_scheduled() and day.error is None


def test_a_day_whose_lane_died_under_it_fails_and_is_marked_crashed(settings, client, monkeypatch):
    from prefect.states import Crashed, Running, Scheduled

    backfill = a_backfill(["2024-03-05"])
    days = LaneDays(backfill, Lake(str(settings.home / "lake")), "backfill-lane/adult-backfill")
    monkeypatch.setattr(
        days, "_start_lane", lambda lane: fake_lane(client, backfill, lane, Scheduled())
    )
    (day,) = backfill.days
    days.start(day)
    day.state = "running"
    client.set_flow_run_state(day.flow_run_id, Running(), force=True)
    lane = client.read_flow_runs(flow_run_filter=_named(lane_run_name("adult", f"{backfill.id}-1")))
    client.set_flow_run_state(lane[0].id, Crashed(message="process killed"), force=True)

    days.poll([day])
    assert day.state == "failed"
    assert f"lane {backfill.id}-1 ended (Crashed: process killed)" in day.error
    assert client.read_flow_run(day.flow_run_id).state.is_crashed()


def _named(name: str):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    return FlowRunFilter(name=FlowRunFilterName(any_=[name]))
