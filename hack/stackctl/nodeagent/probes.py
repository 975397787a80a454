"""Readiness, liveness and startup probes (httpGet, tcpSocket, exec) with their thresholds.

Readiness drives the container's `ready`; liveness and startup failures restart it.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from .base import Obj
from .podnet import served_by_pod
from .runtime import Container, buildah


@dataclass
class Probe:
    spec: Obj
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    def reset(self, started: float) -> None:
        self.successes = self.failures = 0
        self.next_at = started + float(self.spec.get("initialDelaySeconds", 0))


class PodProbes:
    """Mixed into PodWorker: a container's probes."""

    def probe_all(self, c: Container, now: float) -> None:
        for kind, p in c.probes.items():
            if kind != "startupProbe" and not c.started:
                continue
            if kind == "startupProbe" and c.started:
                continue
            if now < p.next_at:
                continue
            p.next_at = now + float(p.spec.get("periodSeconds", 10))
            ok, why = self.run_probe(c, p.spec)
            if ok:
                p.successes += 1
                p.failures = 0
            else:
                p.failures += 1
                p.successes = 0
            need_ok = int(p.spec.get("successThreshold", 1))
            need_fail = int(p.spec.get("failureThreshold", 3))
            if kind == "readinessProbe":
                if ok and p.successes >= need_ok:
                    c.ready = True
                elif not ok:
                    if p.failures >= need_fail:
                        c.ready = False
                    self.event("Warning", "Unhealthy", f"Readiness probe failed: {why}", once=True)
            elif kind == "startupProbe" and ok:
                c.started = True
            elif not ok and p.failures >= need_fail:
                what = "Liveness" if kind == "livenessProbe" else "Startup"
                self.event("Warning", "Unhealthy", f"{what} probe failed: {why}")
                self.event("Normal", "Killing", f"Container {c.name} failed {what.lower()} probe, "
                           "will be restarted")  # fmt: skip
                c.stop(float(p.spec.get("terminationGracePeriodSeconds") or self.grace()))
                return
        if "readinessProbe" not in c.probes:
            c.ready = c.started

    def run_probe(self, c: Container, spec: Obj) -> tuple[bool, str]:
        timeout = float(spec.get("timeoutSeconds", 1))
        try:
            if "httpGet" in spec:
                h = spec["httpGet"]
                port = self.port(c, h["port"])
                scheme = str(h.get("scheme", "HTTP")).lower()
                host = h.get("host") or self.pod_ip
                if not h.get("host"):
                    ok, why = self.own_port(port)
                    if not ok:
                        return False, why
                url = f"{scheme}://{host}:{port}{h.get('path', '/')}"
                req = urllib.request.Request(url)  # noqa: S310
                for hd in h.get("httpHeaders") or []:
                    req.add_header(hd["name"], hd["value"])
                req.add_header("User-Agent", "kube-probe/local-node")
                ctx = ssl._create_unverified_context() if scheme == "https" else None  # noqa: S323
                try:
                    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:  # noqa: S310
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
            if "tcpSocket" in spec:
                t = spec["tcpSocket"]
                port = self.port(c, t["port"])
                if not t.get("host"):
                    ok, why = self.own_port(port)
                    if not ok:
                        return False, why
                with socket.create_connection((t.get("host") or self.pod_ip, port), timeout):
                    return True, ""
            if "exec" in spec:
                if not c.ctr:
                    return False, "no container"
                argv = ["run", "--isolation", "chroot", c.ctr, "--", *spec["exec"]["command"]]
                res = buildah(*argv, check=False, timeout=timeout + 5)
                return res.returncode == 0, f"command exited {res.returncode}"
            if "grpc" in spec:
                return False, "grpc probes are not supported by the local node"
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        return True, ""

    def own_port(self, port: int) -> tuple[bool, str]:
        """Whether this Pod's own process answers on its IP and `port` (see podnet)."""
        pids = [c.popen.pid for c in self.inits + self.containers if c.popen is not None]
        return served_by_pod(self.pod_ip, port, pids)

    @staticmethod
    def port(c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"named port {port} not found in container {c.name}")

    # -- status --
