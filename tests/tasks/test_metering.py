"""A stage's peak memory is the highest resident memory of the process while it ran, nested
stages included; the process's own peak survives every stage's reset of the kernel's mark."""

from __future__ import annotations

import time

import numpy as np

from tasks import metering
from tasks.metering import StageMeter, process_peak_rss

MB = 1 << 20


def touched(megabytes: int) -> np.ndarray:
    return np.ones(megabytes * MB, dtype=np.uint8)  # every page written: resident


def peak_of(body) -> tuple[int, int]:
    """(peak, resident memory at start) of a stage that runs `body`."""
    meter = StageMeter().start()
    started = meter._peak
    body()
    return meter.stop()["peak_memory_bytes"], started


def test_nested_stages_each_see_the_peak_of_their_own_time():
    outer = StageMeter().start()
    inner_peak, inner_start = peak_of(lambda: touched(300))  # freed at once
    later_peak, later_start = peak_of(lambda: touched(60))
    outer_peak = outer.stop()["peak_memory_bytes"]
    assert inner_peak - inner_start >= 290 * MB
    assert outer_peak >= inner_peak  # the inner stage's reset did not hide it
    assert later_peak - later_start < 200 * MB  # the mark was reset: 300 MB is not its peak
    assert process_peak_rss() >= outer_peak


def test_where_the_mark_cannot_be_reset_memory_is_sampled(monkeypatch, tmp_path):
    monkeypatch.setattr(metering, "CLEAR_REFS", tmp_path)  # a folder: writing it fails
    meter = StageMeter().start()
    assert meter._sampler is not None
    held = touched(200)
    time.sleep(4 * metering.SAMPLE_SECONDS)  # the sampler wakes every 50 ms
    peak = meter.stop()["peak_memory_bytes"]
    assert peak >= 200 * MB and len(held) == 200 * MB


def test_without_proc_the_process_peak_is_the_resident_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(metering, "STATUS", tmp_path / "absent")
    assert process_peak_rss() > 0
