"""The long-lived local Dask cluster of `tidewater serve`: started in its own process,
its scheduler address written to the scheduler file every run attaches to, its scratch
space under TIDEWATER_HOME. Run as `python -m deployments.dask_service`."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import replace

from flows.resources import cluster_spec_of
from flows.settings import Settings
from tasks.cluster import local_cluster, scheduler_file


def main() -> None:
    settings = Settings()
    path = scheduler_file(settings.home)
    scratch = path.parent / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    spec = replace(cluster_spec_of(settings), local_directory=str(scratch))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with local_cluster(spec) as address:
        path.write_text(json.dumps({"address": address}))
        try:
            stop.wait()
        finally:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
