"""`/metrics`, `/healthz` (the supervision loop turns), `/readyz` (capture is healthy), `/status`.

`/status` is JSON for people and for hack/stack: the child's pid and phase, why it is not
ready, and per-table state. Probes answer from a thread, never blocked by a slow probe.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdc_worker.agent.metrics import REGISTRY
from cdc_worker.agent.supervisor import Supervisor

LIVENESS_SECONDS = 120.0


def status(sup: Supervisor) -> dict[str, Any]:
    now = time.time()
    ready, reason = sup.readiness(now)
    child = sup.child
    return {
        "ready": ready,
        "reason": reason,
        "phase": sup.phase.value,
        "pid": child.pid if child is not None and child.running() else None,
        "starts": sup.restarts,
        "config": str(sup.s.config),
        "config_sha256": sup.watch.started,
        "restart_held": sup.held,
        # The cdc = true tables the running agent was started with (it captures these).
        "agent_tables": sorted(f"{k}.{t}" for k, t in sup.running_tables or ()),
        "tables": {
            f"{ks}.{t}": {
                "stalled": st.stalled(now, sup.health.stall_after),
                "pending_since": st.pending_since,
                "last_event": st.last_event,
                "events_per_second": round(st.events_per_second, 3),
                "local_writes": st.writes,
                "emitted": st.emitted,
            }
            for (ks, t), st in sorted(sup.health.tables.items())
        },
    }


def serve(port: int, sup: Supervisor) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ctype = "text/plain"
            if self.path == "/metrics":
                body, code, ctype = generate_latest(REGISTRY), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok = time.monotonic() - sup.last_tick < LIVENESS_SECONDS
                body, code = (
                    (b"ok\n" if ok else b"supervision loop stalled\n"),
                    (200 if ok else 503),
                )
            elif self.path == "/readyz":
                ok, reason = sup.readiness(time.time())
                body, code = f"{reason}\n".encode(), (200 if ok else 503)
            elif self.path == "/status":
                body, code = json.dumps(status(sup), indent=1).encode(), 200
                ctype = "application/json"
            else:
                body, code = b"not found\n", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - probes reach the Pod IP
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
