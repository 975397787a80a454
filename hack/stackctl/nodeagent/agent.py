"""The node: registration, Lease and status heartbeats, and the loop that gives each bound Pod
a PodWorker (and stops those of Pods that were deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

from ..core import Proc
from .api import Api, ApiError
from .base import (
    LEASE_INTERVAL,
    LEASE_SECONDS,
    NODE_STATUS_INTERVAL,
    SHUTDOWN_GRACE_CAP,
    SYNC_INTERVAL,
    Obj,
    log,
    now_micro,
    now_rfc3339,
)
from .pod import PodWorker
from .podnet import PodIPs
from .runtime import buildah


def cleanup_orphans(state: Path) -> int:
    """Stop every container process an earlier agent recorded, by PID, and drop its container."""
    n = 0
    pods = state / "pods"
    if not pods.is_dir():
        return 0
    for pod_dir in pods.iterdir():
        for pid_file in pod_dir.glob("*.pid"):
            if Proc(pid_file.stem, pod_dir).stop(timeout=10):
                n += 1
        for ctr_file in pod_dir.glob("*.ctr"):
            buildah("rm", ctr_file.read_text().strip(), check=False)
            ctr_file.unlink(missing_ok=True)
    return n


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.node: str = args.node
        self.state: Path = args.state
        self.api_port: int = args.api_port
        self.kubelet_port: int = args.kubelet_port
        self.api = Api(f"https://127.0.0.1:{args.api_port}", args.ca, args.cert, args.key)
        self.pki = args
        self.workers: dict[str, PodWorker] = {}
        self.pod_ips = PodIPs(args.pod_cidr)
        self.stopping = False
        self.stop_event = threading.Event()
        # Set by the Pod watch: a Pod bound here changed, sync now rather than at the next tick
        # (a kubelet starts a Pod as soon as it is bound; polling every second added ~0.5 s).
        self.wake = threading.Event()
        self._transitions: dict[str, tuple[str, str]] = {}

    # -- node object --

    def node_status(self, ready: bool, message: str) -> Obj:
        ts = now_rfc3339()
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        cap = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage(self.state).total // 1024}Ki",
        }
        buildah_version = buildah("--version", check=False).stdout.strip().split(" ")[2:3]

        def cond(t: str, status: str, reason: str, msg: str) -> Obj:
            since = self._transition(t, status)
            return {"type": t, "status": status, "reason": reason, "message": msg,
                    "lastHeartbeatTime": ts, "lastTransitionTime": since}  # fmt: skip

        os_release = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        return {
            "capacity": cap,
            "allocatable": cap,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "sufficient memory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "sufficient PID"),
                cond(
                    "Ready",
                    "True" if ready else "False",
                    "KubeletReady" if ready else "KubeletNotReady",
                    message,
                ),
            ],
            # No Hostname address: the API server would dial it first (for `kubectl logs`) and
            # the node's name does not resolve.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": os.uname().release,
                "osImage": os_release.get("PRETTY_NAME", "Linux").strip('"'),
                "containerRuntimeVersion": f"buildah://{''.join(buildah_version)}",
                "kubeletVersion": self.pki.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    os.uname().machine, os.uname().machine
                ),
            },
        }

    def _transition(self, ctype: str, status: str) -> str:
        prev = self._transitions.get(ctype)
        if prev is None or prev[0] != status:
            self._transitions[ctype] = (status, now_rfc3339())
        return self._transitions[ctype][1]

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64" if os.uname().machine == "x86_64" else os.uname().machine,
            "node.kubernetes.io/local-node": "true",
        }
        try:
            self.api.get(f"/api/v1/nodes/{self.node}")
        except ApiError as e:
            if e.status != 404:
                raise
            taints = []
            for t in self.pki.taint:
                kv, _, effect = t.rpartition(":")
                key, _, value = kv.partition("=")
                taints.append({"key": key, "value": value, "effect": effect})
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": self.node, "labels": labels},
                    "spec": {"taints": taints} if taints else {}}  # fmt: skip
            self.api.call("POST", "/api/v1/nodes", body)
            log(f"registered node {self.node}")
        self.update_node(True, "local node agent is posting ready status")

    def update_node(self, ready: bool, message: str) -> None:
        self.api.merge_patch(
            f"/api/v1/nodes/{self.node}/status", {"status": self.node_status(ready, message)}
        )

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now_micro()}  # fmt: skip
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            node = self.api.get(f"/api/v1/nodes/{self.node}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node,
                     "uid": node["metadata"]["uid"]}  # fmt: skip
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node, "namespace": "kube-node-lease",
                                 "ownerReferences": [owner]},
                    "spec": spec}  # fmt: skip
            self.api.call(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body
            )

    # -- the loop --

    def sync_pods(self) -> None:
        pods = self.api.get("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={self.node}"})[
            "items"
        ]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            w = self.workers.get(uid)
            if w is None:
                if pod["metadata"].get("deletionTimestamp") and not pod.get("status", {}).get(
                    "containerStatuses"
                ):
                    w = PodWorker(self, pod)  # never started: just let it go
                    w.pod = pod
                    w.terminate()
                    self.workers[uid] = w
                    w.start()
                    continue
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                w = PodWorker(self, pod)
                self.workers[uid] = w
                log(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} bound here")
                w.start()
            else:
                status = w.pod.get("status", {})
                w.pod = {**pod, "status": status}
                if pod["metadata"].get("deletionTimestamp"):
                    w.terminate()
        for uid, w in list(self.workers.items()):
            if uid not in seen:
                w.terminate(deleted=True)
            if not w.is_alive() and (uid not in seen or w.stop_event.is_set()):
                del self.workers[uid]

    def watch_pods(self) -> None:
        """Wake the loop whenever a Pod bound to this node changes (the LIST stays the truth)."""
        query = {"fieldSelector": f"spec.nodeName={self.node}"}
        while not self.stop_event.is_set():
            try:
                for _ in self.api.watch("/api/v1/pods", query, timeout=300):
                    self.wake.set()
                    if self.stop_event.is_set():
                        return
            except (ApiError, OSError, ValueError) as e:
                log(f"pod watch ended: {e}; restarting")
                self.stop_event.wait(1.0)

    def run(self) -> None:
        stopped = cleanup_orphans(self.state)
        if stopped:
            log(f"stopped {stopped} container process(es) left by an earlier agent")
        self.register()
        self.renew_lease()
        last_lease = last_status = time.monotonic()
        log(f"node {self.node} ready; syncing pods on every change and every {SYNC_INTERVAL:.0f}s")
        threading.Thread(target=self.watch_pods, name="pod-watch", daemon=True).start()
        while not self.stop_event.is_set():
            self.wake.clear()
            try:
                now = time.monotonic()
                if now - last_lease >= LEASE_INTERVAL:
                    self.renew_lease()
                    last_lease = now
                if now - last_status >= NODE_STATUS_INTERVAL:
                    self.update_node(True, "local node agent is posting ready status")
                    last_status = now
                self.sync_pods()
            except (ApiError, OSError) as e:
                log(f"sync error: {e}")
            self.wake.wait(SYNC_INTERVAL)
        self.shutdown()

    def shutdown(self) -> None:
        self.stopping = True
        log(f"stopping {len(self.workers)} pod(s)")
        for w in self.workers.values():
            w.terminate()
        for w in self.workers.values():
            w.join(timeout=SHUTDOWN_GRACE_CAP + 5)
        with contextlib.suppress(ApiError, OSError):
            self.update_node(False, "the local node agent stopped")
        log("stopped")

    # -- kubelet API (logs only) --


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
