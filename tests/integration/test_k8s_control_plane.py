"""The local Kubernetes control plane (`hack/stack up k8s`) behaves like a real cluster.

Everything goes through the kubectl and helm binaries the stack built, with the admin kubeconfig
`hack/stack env` prints, exactly as a developer (or the operator's tests) would use them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

# A cold `hack/stack up k8s` compiles Kubernetes from source (~10 minutes, once per version);
# the tests themselves bound every command with their own timeouts.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600), pytest.mark.k8s]

GROUP = "stacktest.casscdc.io"


def _pins() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "hack/k8s/build.sh"), "--print"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def kube_env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    env = stack("k8s")
    # `hack/stack env` prepends the kubectl/helm directories to a literal "$PATH".
    path = env["PATH"].replace("$PATH", os.environ.get("PATH", ""))
    return {**os.environ, "KUBECONFIG": env["KUBECONFIG"], "PATH": path}


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def kubectl(kube_env: dict[str, str]) -> Kubectl:
    def run(
        *args: str, stdin: str | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["kubectl", "--request-timeout=30s", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env or kube_env,
            timeout=90,
            check=False,
        )
        if check and res.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {res.returncode}:\n{res.stderr}")
        return res

    return run


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _apply(kubectl: Kubectl, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", *extra, stdin=json.dumps(obj), check=False)


def _eventually(check: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def test_apiserver_is_ready(kubectl: Kubectl) -> None:
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    verbose = kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in verbose
    assert "[+]poststarthook/rbac/bootstrap-roles ok" in verbose


def test_versions_are_the_pinned_ones(kubectl: Kubectl, kube_env: dict[str, str]) -> None:
    pins = _pins()
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pins["K8S_VERSION"]
    assert version["serverVersion"]["gitTreeState"] == "clean"
    assert version["clientVersion"]["gitVersion"] == pins["K8S_VERSION"]
    helm = subprocess.run(
        ["helm", "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        env=kube_env,
        timeout=30,
        check=True,
    )
    assert helm.stdout.strip() == pins["HELM_VERSION"]


def test_helm_installs_a_chart(
    kubectl: Kubectl, kube_env: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hi\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
        "  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )

    def helm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["helm", *args, "--namespace", namespace],
            capture_output=True,
            text=True,
            env=kube_env,
            timeout=120,
            check=True,
        )

    helm("install", "demo", str(chart), "--set", "greeting=hello", "--wait", "--timeout", "60s")
    cm = json.loads(
        kubectl("get", "configmap", "demo-greeting", "-n", namespace, "-o", "json").stdout
    )
    assert cm["data"]["greeting"] == "hello"
    assert cm["data"]["kube"] == _pins()["K8S_VERSION"]  # helm asked the live cluster
    assert "demo" in helm("list", "-q").stdout.split()
    helm("uninstall", "demo", "--wait")
    gone = kubectl("get", "configmap", "demo-greeting", "-n", namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size", "replicas"],
                                "properties": {
                                    "size": {"type": "string", "enum": ["small", "large"]},
                                    "replicas": {"type": "integer", "minimum": 1},
                                    "maxReplicas": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.maxReplicas) || "
                                        "self.replicas <= self.maxReplicas",
                                        "message": "replicas must not exceed maxReplicas",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widget_crd(kubectl: Kubectl) -> Iterator[str]:
    res = _apply(kubectl, WIDGET_CRD)
    assert res.returncode == 0, res.stderr
    name = WIDGET_CRD["metadata"]["name"]
    kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    yield name
    kubectl("delete", "crd", name, "--wait=false", check=False)


def _widget(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def test_crd_objects_are_validated(kubectl: Kubectl, widget_crd: str, namespace: str) -> None:
    ok = _apply(kubectl, _widget(namespace, "good", {"size": "small", "replicas": 2}))
    assert ok.returncode == 0, ok.stderr
    got = json.loads(
        kubectl("get", f"widgets.{GROUP}", "good", "-n", namespace, "-o", "json").stdout
    )
    assert got["spec"] == {"size": "small", "replicas": 2}
    assert got["metadata"]["generation"] == 1

    bad = _apply(kubectl, _widget(namespace, "bad", {"size": "small", "replicas": 0}))
    assert bad.returncode != 0
    assert "spec.replicas" in bad.stderr
    assert "should be greater than or equal to 1" in bad.stderr

    wrong_enum = _apply(kubectl, _widget(namespace, "bad", {"size": "huge", "replicas": 1}))
    assert wrong_enum.returncode != 0
    assert "spec.size" in wrong_enum.stderr

    missing = _apply(kubectl, _widget(namespace, "bad", {"size": "large"}))
    assert missing.returncode != 0
    assert "spec.replicas" in missing.stderr
    assert "Required value" in missing.stderr

    cel = _apply(
        kubectl, _widget(namespace, "bad", {"size": "large", "replicas": 5, "maxReplicas": 3})
    )
    assert cel.returncode != 0
    assert "replicas must not exceed maxReplicas" in cel.stderr

    names = kubectl("get", f"widgets.{GROUP}", "-n", namespace, "-o", "name").stdout.split()
    assert names == [f"widget.{GROUP}/good"]


def test_rbac_denies_what_the_role_does_not_grant(
    kubectl: Kubectl, kube_env: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl(
        "create", "role", "configmap-reader", "--verb=get,list", "--resource=configmaps",
        "-n", namespace,
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "reader", "--role=configmap-reader",
        f"--serviceaccount={namespace}:reader", "-n", namespace,
    )  # fmt: skip
    kubectl("create", "configmap", "visible", "--from-literal=k=v", "-n", namespace)
    kubectl("create", "secret", "generic", "hidden", "--from-literal=k=v", "-n", namespace)

    who = f"system:serviceaccount:{namespace}:reader"

    def can_i(verb: str, resource: str) -> str:
        res = kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={who}", check=False)
        return res.stdout.strip()

    assert can_i("list", "configmaps") == "yes"
    assert can_i("create", "configmaps") == "no"
    assert can_i("get", "secrets") == "no"

    # A real token for the ServiceAccount, used on its own (no admin client certificate).
    token = kubectl("create", "token", "reader", "-n", namespace, "--duration=10m").stdout.strip()
    raw = json.loads(kubectl("config", "view", "--raw", "-o", "json").stdout)
    cluster = raw["clusters"][0]["cluster"]
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    sa_env = {**kube_env, "KUBECONFIG": str(tmp_path / "sa.kubeconfig")}
    for args in (
        ("config", "set-cluster", "local", f"--server={cluster['server']}",
         f"--certificate-authority={ca}", "--embed-certs"),
        ("config", "set-credentials", "reader", f"--token={token}"),
        ("config", "set-context", "reader", "--cluster=local", "--user=reader"),
        ("config", "use-context", "reader"),
    ):  # fmt: skip
        kubectl(*args, env=sa_env)

    whoami = json.loads(kubectl("auth", "whoami", "-o", "json", env=sa_env).stdout)
    assert whoami["status"]["userInfo"]["username"] == who

    listed = kubectl("get", "configmaps", "-n", namespace, "-o", "name", env=sa_env)
    assert "configmap/visible" in listed.stdout.split()

    secret = kubectl("get", "secret", "hidden", "-n", namespace, env=sa_env, check=False)
    assert secret.returncode != 0
    assert "Forbidden" in secret.stderr
    assert f'User "{who}" cannot get resource "secrets"' in secret.stderr

    create = kubectl("create", "configmap", "nope", "-n", namespace, env=sa_env, check=False)
    assert create.returncode != 0
    assert 'cannot create resource "configmaps"' in create.stderr

    other = kubectl("get", "configmaps", "-n", "default", env=sa_env, check=False)
    assert other.returncode != 0
    assert "Forbidden" in other.stderr


def test_garbage_collector_deletes_dependents(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "owner", "--from-literal=k=v", "-n", namespace)
    uid = kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout.strip()
    assert uid
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
        "data": {"k": "v"},
    }
    res = _apply(kubectl, child)
    assert res.returncode == 0, res.stderr
    kubectl("delete", "configmap", "owner", "-n", namespace)

    def child_gone() -> bool:
        got = kubectl("get", "configmap", "child", "-n", namespace, check=False)
        return got.returncode != 0 and "NotFound" in got.stderr

    assert _eventually(child_gone, 60), "the garbage collector did not delete the dependent"


def test_controllers_and_scheduler_act(kubectl: Kubectl, namespace: str) -> None:
    """Deployment → ReplicaSet → Pod (controllers), then the scheduler reports no node for it."""
    assert _eventually(
        lambda: (
            kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode
            == 0
        ),
        30,
    ), "the ServiceAccount controller did not create the namespace's default ServiceAccount"
    # A node selector nothing matches keeps "no node fits" true even when the local node runs.
    web = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"nodeSelector": {"casscdc.io/no-such-node": "x"},
                         "containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }  # fmt: skip
    kubectl("apply", "-f", "-", stdin=json.dumps(web))

    def pods() -> list[dict[str, Any]]:
        out = kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout
        return list(json.loads(out)["items"])

    assert _eventually(lambda: len(pods()) == 1, 60), "no Pod was created for the Deployment"

    def unschedulable() -> bool:
        conds = pods()[0].get("status", {}).get("conditions", [])
        return any(
            c["type"] == "PodScheduled"
            and c["status"] == "False"
            and c["reason"] == "Unschedulable"
            for c in conds
        )

    # No node matches the selector, so the scheduler's honest answer is "unschedulable".
    assert _eventually(unschedulable, 60), "the scheduler did not report on the Pod"
