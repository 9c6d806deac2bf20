"""A real S3 HTTP API on loopback for the tests: moto's S3 backend behind werkzeug, run as
its own process (`python tests/integration/s3_server.py PORT`).

One departure from `moto_server`: requests are served one at a time. moto checks a PUT's
`If-None-Match: *` and then stores the object in two steps, so two concurrent conditional
PUTs of one Delta log entry could both succeed; S3 does the check and the write atomically,
and delta-rs's commits rely on it. Serving requests in turn keeps S3's guarantee.
"""

from __future__ import annotations

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class OneAtATime:
    """WSGI middleware: the wrapped app serves one request at a time."""

    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            return list(self.app(environ, start_response))


def main(port: int) -> None:
    app = OneAtATime(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", port, app, threaded=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
