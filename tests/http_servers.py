"""A local HTTP server speaking JSON, for the tests of clients (the judge, the served backends).

Real HTTP on a free port of 127.0.0.1; a test's handler answers what an OpenAI-compatible server
answers in the case it needs (a model list, an error status, a dropped connection). What is under
test is the client side.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    """Lists one model, `model`, on GET; a subclass answers POST."""

    model = "test"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "test"}]})


@contextmanager
def serving(handler: type[JsonHandler]) -> Iterator[ThreadingHTTPServer]:
    """`handler` served from a thread until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
