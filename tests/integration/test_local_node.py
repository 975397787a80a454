"""The local node (`hack/stack up node`) runs Pods from the project's image, for real.

The image is built by `make image` (buildah, chroot isolation, local Debian base); the agent runs
each container with `buildah run --isolation chroot` on the host network, so what a Deployment
starts answers on loopback. Nothing here is faked: the worker connects to the stack's Kafka,
PostgreSQL and Redis with a password from a Secret, and its readiness comes from /readyz.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO
from tests.support.worker_proc import create_topics, free_port, wait_for

# A cold `make image` debootstraps the base and installs the wheelhouse (~2 minutes); a cold
# `hack/stack up k8s` compiles Kubernetes (~10 minutes).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

IMAGE = "localhost/cass-cdc-pg:dev"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("postgres", "redis", "kafka", "k8s", "node")


@pytest.fixture(scope="module")
def image() -> str:
    """`make image` (seconds when nothing changed: every layer is cached)."""
    res = subprocess.run(["make", "-s", "image"], cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"make image failed:\n{res.stdout}\n{res.stderr}", pytrace=False)
    return IMAGE


@pytest.fixture(scope="module")
def kubectl(env: dict[str, str]) -> Kubectl:
    path = env["PATH"].replace("$PATH", os.environ.get("PATH", ""))
    kenv = {**os.environ, "KUBECONFIG": env["KUBECONFIG"], "PATH": path}

    def run(
        *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["kubectl", "--request-timeout=30s", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=kenv,
            timeout=180,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {res.stderr}")
        return res

    return run


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl, image: str) -> Iterator[str]:
    name = f"node-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(kubectl: Kubectl, ns: str, *objs: dict[str, Any]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin="\n---\n".join(json.dumps(o) for o in objs))


def get(kubectl: Kubectl, ns: str, *what: str) -> Any:
    return json.loads(kubectl("get", "-n", ns, *what, "-o", "json").stdout)


def http(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def pod_processes(pod: str, needle: str) -> list[int]:
    """Host PIDs of processes started for this Pod (HOSTNAME=<pod> is in their environment)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in cmd and f"HOSTNAME={pod}".encode() in environ and "buildah" not in cmd:
            pids.append(int(p.name))
    return pids


def test_node_is_ready_and_schedulable(kubectl: Kubectl, env: dict[str, str]) -> None:
    node = json.loads(kubectl("get", "node", env["CDC_LOCAL_NODE"], "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conds["Ready"] == "True"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert int(node["status"]["allocatable"]["pods"]) > 0
    assert not node["spec"].get("taints")
    lease = json.loads(
        kubectl("get", "lease", "-n", "kube-node-lease", env["CDC_LOCAL_NODE"], "-o", "json").stdout
    )
    assert lease["spec"]["holderIdentity"] == env["CDC_LOCAL_NODE"]


def test_worker_deployment_runs_from_the_image_and_stops_when_deleted(
    kubectl: Kubectl, env: dict[str, str], ns: str, image: str
) -> None:
    name = f"ln{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], topic, f"{name}.dlq", partitions=1)
    dsn = urlsplit(env["PG_DSN"])
    port = free_port()
    config = {
        "pipeline": name,
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"], "groupId": f"g-{name}",
                  "deadLetterTopic": f"{name}.dlq"},
        "postgres": {"dsn": f"postgresql://{dsn.username}@{dsn.hostname}:{dsn.port}{dsn.path}",
                     "schema": name},
        "redis": {"url": env["REDIS_URL"]},
        "tables": [{"topic": topic, "source": {"keyspace": "ks", "table": "t"},
                    "target": {"table": "t"},
                    "schema": {"partitionKey": ["p"], "clusteringKey": [],
                               "columns": {"p": "int", "a": "text"}}}],
        "httpPort": port,
    }  # fmt: skip
    labels = {"app": name}
    apply(
        kubectl,
        ns,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg"},
         "stringData": {"password": dsn.password}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "worker"},
         "data": {"worker.yaml": yaml.safe_dump(config)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "terminationGracePeriodSeconds": 10,
                      "containers": [{
                          "name": "worker", "image": image, "imagePullPolicy": "Never",
                          "command": ["cdc-worker", "run", "--config", "/etc/cdc/worker.yaml"],
                          "env": [{"name": "POSTGRES_PASSWORD",
                                   "valueFrom": {"secretKeyRef": {"name": "pg",
                                                                  "key": "password"}}}],
                          "ports": [{"name": "http", "containerPort": port}],
                          "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                             "periodSeconds": 2},
                          "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                            "periodSeconds": 5, "initialDelaySeconds": 5},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/cdc"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "worker"}}]}}}},
    )  # fmt: skip
    kubectl("wait", "-n", ns, f"deployment/{name}", "--for=condition=Available", "--timeout=120s")

    # The process really runs, from the image, and answers on loopback.
    assert http(port, "/readyz") == 200
    assert http(port, "/healthz") == 200
    pod = get(kubectl, ns, "pods", "-l", f"app={name}")["items"][0]
    pod_name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    assert pod["status"]["podIP"] == "127.0.0.1"
    pids = pod_processes(pod_name, "cdc-worker run")
    assert len(pids) == 1, pids
    root = Path(f"/proc/{pids[0]}/root")
    assert root.resolve() != Path("/")  # chrooted into the image's root filesystem
    assert (root / "opt/venv/bin/cdc-worker").exists()
    assert yaml.safe_load((root / "etc/cdc/worker.yaml").read_text())["pipeline"] == name
    status = (Path(f"/proc/{pids[0]}/status")).read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == "10001"  # the image's non-root USER
    # The path as the container sees it (Debian's /var/run is an absolute symlink to /run).
    var_run = root / "var/run"
    run_dir = root / os.readlink(var_run).lstrip("/") if var_run.is_symlink() else var_run
    sa = run_dir / "secrets/kubernetes.io/serviceaccount"
    assert (sa / "namespace").read_text() == ns
    assert (sa / "token").read_text().count(".") == 2
    assert "worker_started" in kubectl("logs", "-n", ns, pod_name).stdout  # via the node API

    # Deleting the Deployment: garbage collection removes the ReplicaSet and the Pod, and the
    # node stops the process.
    kubectl("delete", "-n", ns, f"deployment/{name}", "--wait=true")
    wait_for(
        lambda: (
            not get(kubectl, ns, "replicasets", "-l", f"app={name}")["items"]
            and not get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
        ),
        60,
        "the ReplicaSet and Pod garbage-collected",
    )
    wait_for(lambda: not Path(f"/proc/{pids[0]}").exists(), 30, "the worker process gone")
    assert http(port, "/healthz") == 0


def test_pod_runs_under_its_own_service_account(
    kubectl: Kubectl, env: dict[str, str], ns: str, image: str
) -> None:
    """In-cluster config works, and RBAC applies to the Pod's ServiceAccount, not to the node."""
    script = (
        "from kubernetes import client, config\n"
        "from kubernetes.client.rest import ApiException\n"
        "config.load_incluster_config()\n"
        "v1 = client.CoreV1Api()\n"
        f"print('DATA', v1.read_namespaced_config_map('visible', '{ns}').data['k'])\n"
        "try:\n"
        f"    v1.list_namespaced_secret('{ns}')\n"
        "    print('SECRETS allowed')\n"
        "except ApiException as e:\n"
        "    print('SECRETS', e.status)\n"
    )
    apply(
        kubectl,
        ns,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "visible"},
         "data": {"k": "from-the-api"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "read-cm"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster"},
         "spec": {"serviceAccountName": "reader", "restartPolicy": "Never",
                  "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never",
                                  "command": ["python3", "-c", script]}]}},
    )  # fmt: skip
    wait_for(
        lambda: (
            get(kubectl, ns, "pod", "incluster")["status"].get("phase") in ("Succeeded", "Failed")
        ),
        60,
        "the in-cluster Pod finished",
    )
    logs = kubectl("logs", "-n", ns, "incluster").stdout
    assert get(kubectl, ns, "pod", "incluster")["status"]["phase"] == "Succeeded", logs
    assert "DATA from-the-api" in logs
    assert "SECRETS 403" in logs


def test_missing_image_is_visibly_not_ready_and_crashes_restart(
    kubectl: Kubectl, ns: str, image: str
) -> None:
    apply(
        kubectl,
        ns,
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"},
         "spec": {"containers": [{"name": "c", "image": "localhost/not-built-here:1",
                                  "command": ["sleep", "1000"]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
         "spec": {"terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never",
                                  "command": ["sh", "-c", "echo bye; exit 3"]}]}},
    )  # fmt: skip

    def waiting_reason() -> str:
        st = get(kubectl, ns, "pod", "noimage")["status"]
        return str(
            ((st.get("containerStatuses") or [{}])[0].get("state") or {})
            .get("waiting", {})
            .get("reason", "")
        )

    wait_for(lambda: waiting_reason() == "ImagePullBackOff", 30, "the image reported missing")
    time.sleep(3)
    st = get(kubectl, ns, "pod", "noimage")["status"]
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["ready"] is False
    assert (
        "not in the local image store" in st["containerStatuses"][0]["state"]["waiting"]["message"]
    )

    def restarts() -> int:
        cs = get(kubectl, ns, "pod", "crasher")["status"].get("containerStatuses") or [{}]
        return int(cs[0].get("restartCount", 0))

    wait_for(lambda: restarts() >= 1, 60, "the crashing container restarted")
    cs = get(kubectl, ns, "pod", "crasher")["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["ready"] is False
    kubectl("delete", "-n", ns, "pod", "noimage", "crasher", "--wait=true", "--timeout=60s")
