"""What a stage cost: wall seconds, CPU seconds and peak resident memory of this process.

A stage's peak memory is the kernel's high-water mark of resident memory (VmHWM), reset as
the stage starts (Linux: `5 > /proc/self/clear_refs`). Before each reset every stage still
open takes the mark so far, and so does the process's own peak (`process_peak_rss`): nested
and concurrent stages each get their peak, and nothing samples. Where the mark cannot be
reset (not Linux, a /proc that refuses), resident memory is sampled every 50 ms instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.05
STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")

_LOCK = threading.Lock()
_OPEN: list[StageMeter] = []
_before_last_reset = 0  # the process's peak up to the last reset of the mark


@dataclass(eq=False)
class StageMeter:
    """Measures from `start()` to `stop()`."""

    _wall: float = 0.0
    _cpu: float = 0.0
    _peak: int = 0
    _done: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def start(self) -> StageMeter:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        self._peak = psutil.Process().memory_info().rss
        with _LOCK:
            marked = _take_mark() is not None and _reset_high_water_mark()
            if marked:
                _OPEN.append(self)
        if marked:
            return self
        self._sampler = threading.Thread(target=self._sample, name="stage-meter", daemon=True)
        self._sampler.start()
        return self

    def stop(self) -> dict[str, float | int]:
        if self._sampler is None:
            with _LOCK:
                _take_mark()
                _OPEN.remove(self)
        else:
            self._done.set()
            self._sampler.join()
            self._peak = max(self._peak, psutil.Process().memory_info().rss)
        return {
            "wall_seconds": round(time.perf_counter() - self._wall, 3),
            "cpu_seconds": round(time.process_time() - self._cpu, 3),
            "peak_memory_bytes": self._peak,
        }

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._done.wait(SAMPLE_SECONDS):
            self._peak = max(self._peak, process.memory_info().rss)


def process_peak_rss() -> int:
    """This process's peak resident memory so far, in bytes, whatever the stages reset
    (`ru_maxrss` would not do: Linux carries a parent's peak over into its child at exec)."""
    with _LOCK:
        return max(_before_last_reset, _high_water_mark() or psutil.Process().memory_info().rss)


def _high_water_mark() -> int | None:
    try:
        status = STATUS.read_text()
    except OSError:
        return None
    return int(status.split("VmHWM:")[1].split()[0]) * 1024 if "VmHWM:" in status else None


def _take_mark() -> int | None:
    """Hand the mark so far to every open stage and to the process's peak (None: no mark
    to read)."""
    global _before_last_reset
    mark = _high_water_mark()
    if mark is None:
        return None
    for meter in _OPEN:
        meter._peak = max(meter._peak, mark)
    _before_last_reset = max(_before_last_reset, mark)
    return mark


def _reset_high_water_mark() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
