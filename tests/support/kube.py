"""The operator as a process under the chart's RBAC, and kubectl against the stack's API server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from cdc_operator.rbac import cluster_role, role
from tests.support.worker_proc import free_port


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        bin_dir = env["PATH"].split(":")[0]
        self.kubectl = str(Path(bin_dir) / "kubectl")
        self.kubeconfig = env["KUBECONFIG"]

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> Any:
        return subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            input=stdin, capture_output=True, text=True, check=check, timeout=60,
        )  # fmt: skip

    def apply(self, doc: Any, check: bool = True) -> Any:
        docs = doc if isinstance(doc, list) else [doc]
        return self.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs), check=check)

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        res = self.run("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None


class Operator:
    def __init__(self, cluster: Cluster, ns: str, tmp: Path, also: tuple[str, ...] = ()) -> None:
        """The operator's account lives in `ns`; it watches `ns` and the namespaces `also`."""
        for other in also:
            cluster.apply([
                role("cdc-operator", other),
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "cdc-operator", "namespace": other},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "cdc-operator"},
                 "subjects": [{"kind": "ServiceAccount", "name": "cdc-operator",
                               "namespace": ns}]},
            ])  # fmt: skip
        cluster.apply([
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "cdc-operator", "namespace": ns}},
            role("cdc-operator", ns),
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "cdc-operator", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "cdc-operator"},
             "subjects": [{"kind": "ServiceAccount", "name": "cdc-operator", "namespace": ns}]},
            cluster_role(f"cdc-operator-{ns}"),
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": f"cdc-operator-{ns}"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": f"cdc-operator-{ns}"},
             "subjects": [{"kind": "ServiceAccount", "name": "cdc-operator", "namespace": ns}]},
        ])  # fmt: skip
        token = cluster.run("create", "token", "cdc-operator", "-n", ns, "--duration=2h").stdout
        admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        clusters = admin["clusters"][:1]
        self.kubeconfig = tmp / "operator.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": clusters,
            "users": [{"name": "sa", "user": {"token": token.strip()}}],
            "contexts": [{"name": "sa", "context": {"cluster": clusters[0]["name"],
                                                    "user": "sa", "namespace": ns}}],
            "current-context": "sa",
        }))  # fmt: skip
        self.ns = ns
        self.token = token.strip()
        self.namespaces = [ns, *also]
        self.metrics_port = free_port()
        self.log = tmp / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness_port = 0

    def start(self, **extra_env: str) -> Operator:
        self.liveness_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "CDC_OPERATOR_STATUS_INTERVAL": "2",
               "CDC_OPERATOR_LIVENESS": f"http://127.0.0.1:{self.liveness_port}/healthz",
               "CDC_OPERATOR_METRICS_PORT": str(self.metrics_port),
               # The stack's OpenBao is a dev server on http://.
               "CDC_OPERATOR_ALLOW_INSECURE_VAULT": "true", **extra_env}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_operator.cli",
             *(a for n in self.namespaces for a in ("--namespace", n))],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env,  # noqa: SIM115
        )  # fmt: skip
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def drop_finalizers(kubeconfig: str, namespace: str) -> None:
    """Let a namespace go after its operator has stopped: clear Kopf's finalizers."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    for plural in ("tablereplications", "cdcpipelines"):
        items = api.list_namespaced_custom_object("casscdc.io", "v1alpha1", namespace, plural)
        for item in items["items"]:
            if item["metadata"].get("finalizers"):
                try:
                    api.patch_namespaced_custom_object(
                        "casscdc.io", "v1alpha1", namespace, plural, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )  # fmt: skip
                except client.ApiException as e:
                    if e.status != 404:
                        raise
