"""`hack/stack up kwok`: a fake node for scale tests, kept by kwok against the stack's API server.

kwok (sigs.k8s.io/kwok, built from the Go module proxy by hack/k8s/kwok.sh) plays the kubelet
of nodes annotated `kwok.x-k8s.io/node=fake`: it keeps their status and Lease fresh and moves
their Pods through the release's "fast" stages (Ready at once, no process runs; a deleted Pod
goes at once). The component registers one such Node, `kwok-node-0` (1k CPU, 1 TiB, 1M Pods by
kwok's defaults), tainted `kwok.x-k8s.io/node=fake:NoSchedule` so that nothing lands there
unless it tolerates that: bench/operator_bench.py puts its scale phase's workers there with a
MutatingAdmissionPolicy (bench/placement.py). Optional: not in `hack/stack up`'s default list.

Health: kwok alive, its /healthz answering, the Node Ready. See docs/local-stack.md.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from .core import PORT_OFFSET, REPO, Component, StackError, log, run, tcp_open
from .k8s import APISERVER_PORT, K8s

KWOK_BUILD = REPO / "hack" / "k8s" / "kwok.sh"
KWOK_NODE = "kwok-node-0"
KWOK_PORT = 10247 + PORT_OFFSET  # kwok's own /healthz and /metrics
ANNOTATION = "kwok.x-k8s.io/node"


def kwok_pins() -> dict[str, str]:
    out = run(["bash", str(KWOK_BUILD), "--print"]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def node_manifest() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": KWOK_NODE,
            "annotations": {ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": KWOK_NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"taints": [{"key": ANNOTATION, "value": "fake", "effect": "NoSchedule"}]},
    }


class Kwok(Component):
    name = "kwok"
    requires = ("k8s",)
    start_timeout = 60.0
    ports = (KWOK_PORT,)

    def __init__(self) -> None:
        super().__init__()
        self.k8s = K8s()

    def build(self) -> None:
        """Built on `up` only (not by `hack/stack versions`, which installs every component):
        a cold build takes minutes on 2 cores (nice 19); progress goes to the terminal."""
        res = subprocess.run(["bash", str(KWOK_BUILD), "--quiet"], stdout=subprocess.PIPE,
                             text=True, check=False)  # fmt: skip
        if res.returncode != 0:
            raise StackError("kwok: hack/k8s/kwok.sh failed (see above)")

    def version(self) -> str:
        return kwok_pins()["KWOK_VERSION"]

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        kubectl = self.k8s.pins.k8s_bin / "kubectl"
        return subprocess.run(
            [str(kubectl), "--kubeconfig", str(self.k8s.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        self.build()
        pins = kwok_pins()
        self.proc.start(
            [
                Path(pins["KWOK_BIN"]) / "kwok",
                f"--kubeconfig={self.k8s.kubeconfig}",
                f"--config={pins['KWOK_STAGES']}",
                f"--manage-nodes-with-annotation-selector={ANNOTATION}=fake",
                "--cidr=10.128.0.1/16",  # fake Pod IPs: nothing routes them, nothing needs to
                "--node-ip=10.127.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{KWOK_PORT}",
            ]
        )
        res = self.kubectl("apply", "-f", "-", stdin=json.dumps(node_manifest()))
        if res.returncode != 0:
            raise StackError(f"kwok: could not register node {KWOK_NODE}: {res.stderr.strip()}")
        log(f"kwok: node {KWOK_NODE} registered (fake: its Pods are Ready without processes)")

    def healthy(self) -> bool:
        if not self.proc.alive() or not tcp_open(KWOK_PORT):
            return False
        try:
            url = f"http://127.0.0.1:{KWOK_PORT}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status != 200:
                    return False
            status, body = self.k8s._get(
                f"https://127.0.0.1:{APISERVER_PORT}/api/v1/nodes/{KWOK_NODE}", client=True
            )
            if status != 200:
                return False
            conds = {c["type"]: c for c in json.loads(body)["status"].get("conditions", [])}
            return bool(conds.get("Ready", {}).get("status") == "True")
        except (ValueError, KeyError, OSError):
            return False

    def down(self) -> bool:
        stopped = self.proc.stop(self.stop_signal)
        # The Node goes too: a fake node nobody keeps alive would turn NotReady and its Pods
        # would wait for eviction.
        if self.k8s.proc.alive():
            self.kubectl("delete", "node", KWOK_NODE, "--ignore-not-found", "--wait=false")
        return stopped

    def env(self) -> dict[str, str]:
        return {"CDC_KWOK_NODE": KWOK_NODE} if self.proc.alive() else {}
