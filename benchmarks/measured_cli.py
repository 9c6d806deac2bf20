"""`tidewater` as installed, that also writes its peak resident memory (VmHWM, in MB) to the
file named by $TIDEWATER_PEAK_RSS_FILE when it exits: how `benchmarks.pipeline --end-to-end`
measures a `tidewater run`."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from benchmarks.pipeline import peak_rss_mb
from deployments.cli import app

atexit.register(
    lambda: Path(os.environ["TIDEWATER_PEAK_RSS_FILE"]).write_text(f"{peak_rss_mb():.0f}")
)

if __name__ == "__main__":
    app()
