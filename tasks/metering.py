"""What a stage cost: wall seconds, CPU seconds and peak resident memory of this process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.05


@dataclass
class StageMeter:
    """Measures from `start()` to `stop()`; peak memory is sampled (psutil RSS) because the
    kernel's high-water mark covers the whole process lifetime, not one stage."""

    _wall: float = 0.0
    _cpu: float = 0.0
    _peak: int = 0
    _done: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def start(self) -> StageMeter:
        process = psutil.Process()
        self._peak = process.memory_info().rss
        self._wall, self._cpu = time.perf_counter(), time.process_time()

        def sample() -> None:
            while not self._done.wait(SAMPLE_SECONDS):
                self._peak = max(self._peak, process.memory_info().rss)

        self._sampler = threading.Thread(target=sample, name="stage-meter", daemon=True)
        self._sampler.start()
        return self

    def stop(self) -> dict[str, float | int]:
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()
        self._peak = max(self._peak, psutil.Process().memory_info().rss)
        return {
            "wall_seconds": round(time.perf_counter() - self._wall, 3),
            "cpu_seconds": round(time.process_time() - self._cpu, 3),
            "peak_memory_bytes": self._peak,
        }
