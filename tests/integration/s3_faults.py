"""A faulty road to the loopback S3 endpoint, for the tests: an HTTP proxy in its own
process (`python tests/integration/s3_faults.py PORT UPSTREAM_URL`) that passes requests
through unchanged (the Host header too, so signatures still check) except that it

- answers `503 SlowDown` to a share of the requests, without passing them on, as S3 does
  when throttling (`slowdown`, drawn from a seeded generator);
- passes on `drop_commits` Delta commits (PUTs of a `_delta_log/N.json` entry: every
  `drop_every`-th one) and then closes the connection without an answer: the commit
  landed, and its writer cannot know it.

`PUT /__faults__` with a JSON body sets `slowdown`, `seed`, `drop_commits`, `drop_every`;
`GET /__faults__` says what was done: requests, slowed, dropped, every answer's status
and S3 error code (to count refused credentials), and the events: each dropped answer and
each refusal other than 404 and 503.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CONTROL = "/__faults__"
DELTA_COMMIT = re.compile(r"/_delta_log/\d{20}\.json$")
ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class Faults:
    """What the proxy does wrong, and what it did (shared by its threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configure({})

    def configure(self, config: dict) -> None:
        with self.lock:
            self.slowdown = float(config.get("slowdown", 0.0))
            self.random = random.Random(config.get("seed", 0))
            self.drop_commits = int(config.get("drop_commits", 0))
            self.drop_every = int(config.get("drop_every", 1))
            self.done = Counter()
            self.answers = Counter()
            self.events: list[str] = []

    def slow_down(self) -> bool:
        with self.lock:
            self.done["requests"] += 1
            slowed = self.random.random() < self.slowdown
            self.done["slowed"] += slowed
            return slowed

    def drop(self, method: str, path: str) -> bool:
        if method != "PUT" or not DELTA_COMMIT.search(urlsplit(path).path):
            return False
        with self.lock:
            self.done["commits"] += 1
            if self.done["dropped"] >= self.drop_commits or self.done["commits"] % self.drop_every:
                return False
            self.done["dropped"] += 1
            self.events.append(f"dropped the answer to {method} {path}")
            return True

    def answered(self, method: str, path: str, status: int, body: bytes) -> None:
        code = ERROR_CODE.search(body) if status >= 300 else None
        answer = f"{status} {code.group(1).decode() if code else ''}".strip()
        with self.lock:
            self.answers[answer] += 1
            if status >= 400 and status not in (404, 503):
                self.events.append(f"{answer} to {method} {path}")

    def report(self) -> dict:
        with self.lock:
            return {**self.done, "answers": dict(self.answers), "events": list(self.events)}


def handler_for(upstream: str, faults: Faults) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args) -> None:  # noqa: A002 (the base's name)
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self, status: int, body: bytes, headers=(), reason: str | None = None):
            self.send_response(status, reason)
            head = self.command == "HEAD"  # a HEAD's Content-Length is the object's
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and (head or name.lower() != "content-length"):
                    self.send_header(name, value)
            if not head:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _control(self, body: bytes) -> None:
            if self.command == "PUT":
                faults.configure(json.loads(body or b"{}"))
            self._answer(200, json.dumps(faults.report()).encode(),
                         [("Content-Type", "application/json")])  # fmt: skip

        def _proxy(self) -> None:
            body = self._body()
            if self.path.startswith(CONTROL):
                return self._control(body)
            if faults.slow_down():
                faults.answered(self.command, self.path, 503, SLOW_DOWN)
                return self._answer(503, SLOW_DOWN, [("Content-Type", "application/xml")])
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
            try:
                connection.putrequest(self.command, self.path, skip_host=True,
                                      skip_accept_encoding=True)  # fmt: skip
                for name, value in headers.items():
                    connection.putheader(name, value)
                connection.endheaders(body)
                response = connection.getresponse()
                answer = response.read()
            finally:
                connection.close()
            if faults.drop(self.command, self.path):
                self.close_connection = True  # the commit landed; its answer never comes
                return
            faults.answered(self.command, self.path, response.status, answer)
            self._answer(response.status, answer, response.getheaders(), response.reason)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy  # noqa: N815 (http.server's)

    return Handler


def main(port: int, upstream: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(upstream, Faults()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
