"""The kubelet endpoint the API server calls for `kubectl logs` (HTTPS, client certificates
verified against the cluster CA); only /containerLogs is served.
"""

from __future__ import annotations

import http.server
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import Agent


def serve_logs(agent: Agent) -> None:
    """Serve /containerLogs on the kubelet port in a daemon thread."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            m = re.fullmatch(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)", u.path)
            if not m:
                self.send_error(404, "only /containerLogs is served by the local node")
                return
            ns, pod, ctr = m.groups()
            w = next((w for w in agent.workers.values()
                      if w.ns == ns and w.pod_name == pod), None)  # fmt: skip
            if w is None:
                self.send_error(404, f"pod {ns}/{pod} is not on this node")
                return
            suffix = ".log.1" if q.get("previous", ["false"])[0] == "true" else ".log"
            f = w.dir / f"{ctr}{suffix}"
            data = f.read_bytes() if f.exists() else b""
            if "tailLines" in q:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(q["tailLines"][0]) :])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", agent.kubelet_port), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(agent.pki.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED  # only the API server's kubelet-client certificate
    ctx.load_cert_chain(str(agent.pki.serving_cert), str(agent.pki.serving_key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True, name="kubelet-api").start()
