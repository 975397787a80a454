"""`/metrics`, `/healthz` (the process loop is alive) and `/readyz` (it can write).

A tiny threaded HTTP server, so probes answer even while a batch is being written. It binds
`CDC_WORKER_HTTP_HOST` (the operator sets it to the Pod IP from the downward API, so replicas
that share a network namespace, as on the local node, do not collide), else 0.0.0.0.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdc_worker.metrics import REGISTRY
from cdc_worker.startup import Timeline


class Health:
    def __init__(self, stall_seconds: float = 120.0) -> None:
        self.last_loop = time.monotonic()
        self.ready = False
        self.reason = "starting"
        self.stall_seconds = stall_seconds
        self.gap: str | None = None  # an unacknowledged data gap keeps the worker not ready
        self.kafka: str | None = None  # Kafka refusing the worker (consume.Source.refused)
        self.timeline = Timeline()  # the start's phases, logged at the first ready answer

    def tick(self) -> None:
        self.last_loop = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason

    def why(self) -> str | None:
        """None when ready; else why not, as `/readyz` says it."""
        if self.ready and self.alive and not self.gap and not self.kafka:
            return None
        if not self.ready:
            return self.reason
        return f"DataGap: {self.gap}" if self.gap else self.kafka or "stalled"

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_loop < self.stall_seconds


def serve(port: int, health: Health) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, code, ctype = generate_latest(REGISTRY), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok = health.alive
                body, code = (b"ok\n" if ok else b"stalled\n"), (200 if ok else 503)
                ctype = "text/plain"
            elif self.path == "/readyz":
                why = health.why()
                ok = why is None
                if ok and not health.timeline.done:
                    health.timeline.ready()
                text = "ok" if ok else f"not ready: {why}"
                body, code, ctype = (text + "\n").encode(), (200 if ok else 503), "text/plain"
            else:
                body, code, ctype = b"not found\n", 404, "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    host = os.environ.get("CDC_WORKER_HTTP_HOST") or "0.0.0.0"  # noqa: S104 - probes reach the Pod IP
    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
