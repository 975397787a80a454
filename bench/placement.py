"""Where the benchmark's worker Pods run: a node of its own, without changing the operator.

The operator's worker Deployments carry no node selector (a pipeline's spec has none), and the
stack's `local-node` is shared with whatever else runs on this machine. The benchmark therefore
puts its namespaces' Pods on nodes of its own with a MutatingAdmissionPolicy (in-process CEL
admission, GA in Kubernetes 1.36): Pods created in a namespace labelled
`casscdc.io/bench-node=<node>` get a node selector for that node and a toleration of its taint.
Two such nodes:

- a private node agent (hack/stackctl/nodeagent, the stack's own code) registered as
  `opbench-node`, tainted so nothing else lands on it: phase 1 measures apply → Ready on a node
  the benchmark alone uses, with the agent of this working tree, while the stack's local-node
  keeps serving everyone else undisturbed;
- the kwok node (`hack/stack up kwok`): phase 2's 200 workers, Ready without processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LABEL = "casscdc.io/bench-node"
TAINT_KEY = "casscdc.io/bench-node"
PRIVATE_NODE = "opbench-node"
PRIVATE_POD_CIDR = "127.250.0.0/16"
KWOK_NODE = "kwok-node-0"  # hack/stackctl/kwok.py


def policy(node: str) -> list[dict[str, Any]]:
    """A MutatingAdmissionPolicy and its binding: Pods of namespaces labelled for `node` go
    there (node selector, and a toleration of any taint with the benchmark's key or kwok's)."""
    name = f"opbench-place-{node}"
    # A JSON patch: an apply configuration may not replace atomic fields (nodeSelector and
    # tolerations are), a patch's "add" of an object member does.
    expression = (
        "["
        'JSONPatch{op: "add", path: "/spec/nodeSelector", '
        f'value: {{"kubernetes.io/hostname": "{node}"}}}}, '
        'JSONPatch{op: "add", path: "/spec/tolerations", value: ['
        f'Object.spec.tolerations{{key: "{TAINT_KEY}", operator: "Exists"}}, '
        'Object.spec.tolerations{key: "kwok.x-k8s.io/node", operator: "Exists"}'
        "]}]"
    )
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ],
                },
                "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "matchResources": {"namespaceSelector": {"matchLabels": {LABEL: node}}},
            },
        },
    ]


def place(kube: Any, ns: str, node: str) -> None:
    """Pods created in `ns` from now on run on `node`."""
    kube("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in policy(node)))
    kube("label", "namespace", ns, f"{LABEL}={node}", "--overwrite")
    time.sleep(1)  # the policy reaches the API server's admission chain (it watches them)


def unplace(kube: Any, node: str) -> None:
    name = f"opbench-place-{node}"
    kube("delete", "mutatingadmissionpolicybinding", name, "--ignore-not-found", check=False)
    kube("delete", "mutatingadmissionpolicy", name, "--ignore-not-found", check=False)


class PrivateNode:
    """The stack's node agent, run by the benchmark as a second, tainted node."""

    def __init__(self, kube: Any) -> None:
        sys.path.insert(0, str(REPO / "hack"))
        from stackctl.k8s import APISERVER_PORT, K8s, pins
        from tests.support.worker_proc import free_port

        self.kube = kube
        k8s = K8s()
        pki = k8s.pki
        subject = f"/O=system:nodes/CN=system:node:{PRIVATE_NODE}"
        k8s._cert(f"node-{PRIVATE_NODE}", subject)
        k8s._cert(f"node-{PRIVATE_NODE}-serving", subject,
                  sans=["IP:127.0.0.1", f"DNS:{PRIVATE_NODE}"])  # fmt: skip
        self.state = REPO / ".stack" / PRIVATE_NODE
        self.state.mkdir(parents=True, exist_ok=True)
        self.log = REPO / "bench-results" / f"{PRIVATE_NODE}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stackctl.nodeagent", f"--node={PRIVATE_NODE}",
             f"--state={self.state}", f"--api-port={APISERVER_PORT}",
             f"--kubelet-port={free_port()}", f"--ca={pki / 'ca.crt'}",
             f"--cert={pki / f'node-{PRIVATE_NODE}.crt'}",
             f"--key={pki / f'node-{PRIVATE_NODE}.key'}",
             f"--serving-cert={pki / f'node-{PRIVATE_NODE}-serving.crt'}",
             f"--serving-key={pki / f'node-{PRIVATE_NODE}-serving.key'}",
             f"--kubelet-version={pins().k8s}", f"--pod-cidr={PRIVATE_POD_CIDR}",
             f"--taint={TAINT_KEY}={PRIVATE_NODE}:NoSchedule"],
            cwd=REPO / "hack", stdout=open(self.log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kube("get", "node", PRIVATE_NODE, "-o", "json", check=False)
            conds = (json.loads(out).get("status") or {}).get("conditions", []) if out else []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"the benchmark's node agent did not get Ready: see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.kube("delete", "node", PRIVATE_NODE, "--ignore-not-found", "--wait=false",
                  check=False)  # fmt: skip
