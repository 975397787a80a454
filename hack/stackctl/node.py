"""`hack/stack up node`: a local Kubernetes node whose agent runs Pods from the local image store.

The agent (hack/stackctl/nodeagent/, small modules) is one PID-managed process. It registers
the Node `local-node` and runs each bound Pod's containers with `buildah run --isolation chroot`
from images built by `make image` (hack/image/). It authenticates as the node (a client certificate
for system:node:local-node in the group system:nodes, signed by the stack's cluster CA), so the
Node authorizer limits it to the Secrets, ConfigMaps and tokens of its own Pods, as a kubelet.

Health: the agent is alive, the Node is Ready, and its Lease was renewed in the last 40 s.
`down` gives the agent time to stop its Pods' processes (SIGTERM, then SIGKILL after their
grace period, capped at 20 s), then stops any the agent left behind, by their recorded PIDs.
See docs/local-node.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sys

from .core import PORT_OFFSET, REPO, Component, StackError, log, run
from .k8s import APISERVER_PORT, K8s, pins
from .nodeagent import cleanup_orphans

NODE_NAME = "local-node"
KUBELET_PORT = 50250 + PORT_OFFSET
# Each Pod gets its own loopback address from this range (nodeagent/podnet.py); a stack with a
# port offset gets another range, so two stacks on one machine do not hand out the same IPs.
POD_CIDR = os.environ.get("CDC_STACK_POD_CIDR", f"127.{10 + PORT_OFFSET % 240}.0.0/16")


class Node(Component):
    name = "node"
    requires = ("k8s",)
    start_timeout = 60.0
    ports = (KUBELET_PORT,)

    def __init__(self) -> None:
        super().__init__()
        self.k8s = K8s()
        self.pki = self.k8s.pki

    def install(self) -> None:
        res = run(["buildah", "--version"])
        # A node that cannot run containers must say so, not pretend (and not run them otherwise).
        probe = shutil.which("buildah") and _buildah_works()
        if not probe:
            raise StackError(
                "node: buildah is installed but cannot use its storage on this machine "
                f"({res.stdout.strip()}); the local node cannot run containers. "
                "See docs/local-node.md (IMAGE_STORAGE_DRIVER=vfs may help)."
            )

    def version(self) -> str:
        return run(["buildah", "--version"]).stdout.strip()

    def _certs(self) -> None:
        if not (self.pki / "ca.key").exists():
            raise StackError("node: the k8s component's CA is missing; run `hack/stack up k8s`")
        # Client: the identity the Node authorizer and NodeRestriction know.
        self.k8s._cert(f"node-{NODE_NAME}", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        # Server: the kubelet endpoint the API server calls for `kubectl logs`.
        self.k8s._cert(
            f"node-{NODE_NAME}-serving",
            f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            sans=["IP:127.0.0.1", f"DNS:{NODE_NAME}", "DNS:localhost"],
        )

    def start(self) -> None:
        self._certs()
        pki = self.pki
        self.proc.start(
            [
                sys.executable,
                "-m",
                "stackctl.nodeagent",
                f"--node={NODE_NAME}",
                f"--state={self.state_dir}",
                f"--api-port={APISERVER_PORT}",
                f"--kubelet-port={KUBELET_PORT}",
                f"--ca={pki / 'ca.crt'}",
                f"--cert={pki / f'node-{NODE_NAME}.crt'}",
                f"--key={pki / f'node-{NODE_NAME}.key'}",
                f"--serving-cert={pki / f'node-{NODE_NAME}-serving.crt'}",
                f"--serving-key={pki / f'node-{NODE_NAME}-serving.key'}",
                f"--kubelet-version={pins().k8s}",
                f"--pod-cidr={POD_CIDR}",
            ],
            cwd=REPO / "hack",
        )

    def healthy(self) -> bool:
        if not self.proc.alive():
            return False
        try:
            status, body = self.k8s._get(
                f"https://127.0.0.1:{APISERVER_PORT}/api/v1/nodes/{NODE_NAME}", client=True
            )
            if status != 200:
                return False
            conds = {c["type"]: c for c in json.loads(body)["status"].get("conditions", [])}
            if conds.get("Ready", {}).get("status") != "True":
                return False
            status, body = self.k8s._get(
                f"https://127.0.0.1:{APISERVER_PORT}/apis/coordination.k8s.io/v1/namespaces/"
                f"kube-node-lease/leases/{NODE_NAME}",
                client=True,
            )
            if status != 200:
                return False
            renew = json.loads(body)["spec"]["renewTime"]
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(renew.replace("Z", "+00:00"))
            return age.total_seconds() < 40
        except (ValueError, KeyError, OSError):
            return False

    def down(self) -> bool:
        stopped = self.proc.stop(signal.SIGTERM, timeout=45)
        left = cleanup_orphans(self.state_dir)
        if left:
            log(f"node: stopped {left} container process(es) the agent left behind")
        return stopped or bool(left)

    def env(self) -> dict[str, str]:
        return {"CDC_LOCAL_NODE": NODE_NAME, "CDC_LOCAL_NODE_POD_CIDR": POD_CIDR}


def _buildah_works() -> bool:
    try:
        driver = os.environ.get("IMAGE_STORAGE_DRIVER", "overlay")
        run(["buildah", "--storage-driver", driver, "images", "--quiet"])
    except StackError:
        return False
    return True
