"""The local node (`hack/stack up node`) runs Pods from the project's image, for real.

The image is built by `make image` (buildah, chroot isolation, local Debian base); the agent runs
each container with `buildah run --isolation chroot` on the host network, each Pod with its own
loopback address (`status.podIP`), so what a Deployment starts answers on its Pod's IP. Nothing
here is faked: the worker connects to the stack's Kafka, PostgreSQL and Redis with a password
from a Secret, and its readiness comes from /readyz.
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
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600), pytest.mark.k8s]

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


def http(port: int, path: str, host: str = "127.0.0.1") -> int:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as r:
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
         "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "terminationGracePeriodSeconds": 10,
                      "containers": [{
                          "name": "worker", "image": image, "imagePullPolicy": "Never",
                          "command": ["cdc-worker", "run", "--config", "/etc/cdc/worker.yaml"],
                          "env": [{"name": "POSTGRES_PASSWORD",
                                   "valueFrom": {"secretKeyRef": {"name": "pg",
                                                                  "key": "password"}}},
                                  {"name": "CDC_WORKER_HTTP_HOST",
                                   "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                          "ports": [{"name": "http", "containerPort": port}],
                          "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                             "periodSeconds": 2},
                          "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                            "periodSeconds": 5, "initialDelaySeconds": 5},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/cdc"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "worker"}}]}}}},
    )  # fmt: skip
    kubectl("wait", "-n", ns, f"deployment/{name}", "--for=condition=Available", "--timeout=120s")
    wait_for(
        lambda: get(kubectl, ns, "deployment", name)["status"].get("readyReplicas") == 3,
        120,
        "3 ready workers",
    )

    # 3 workers on one port: each process runs, from the image, and answers on its own Pod IP.
    pods = get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 3, ips
    every_pid = []
    for p, ip in zip(pods, ips, strict=True):
        assert ip.startswith("127."), ip
        assert ip != "127.0.0.1"
        assert p["status"]["podIPs"] == [{"ip": ip}]
        assert http(port, "/readyz", ip) == 200
        assert http(port, "/healthz", ip) == 200
        assert p["status"]["phase"] == "Running"
        assert p["status"]["containerStatuses"][0]["ready"] is True
        # Not asserted: restartCount 0. Three workers starting at once on a new schema race on
        # CREATE SCHEMA/TABLE IF NOT EXISTS (OffsetStore/GapStore.ensure take no lock, so one
        # may exit with UniqueViolation pg_namespace_nspname_index and start again).
        every_pid += pod_processes(p["metadata"]["name"], "cdc-worker run")
    assert http(port, "/healthz") == 0  # bound to the Pod IP (CDC_WORKER_HTTP_HOST), not 0.0.0.0
    assert len(every_pid) == 3, every_pid
    pod, ip = pods[0], ips[0]
    pod_name = pod["metadata"]["name"]
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

    # Deleting the Deployment: garbage collection removes the ReplicaSet and the Pods, and the
    # node stops the processes.
    kubectl("delete", "-n", ns, f"deployment/{name}", "--wait=true")
    wait_for(
        lambda: (
            not get(kubectl, ns, "replicasets", "-l", f"app={name}")["items"]
            and not get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
        ),
        60,
        "the ReplicaSet and Pod garbage-collected",
    )
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in every_pid),
        30,
        "the worker processes gone",
    )
    assert all(http(port, "/healthz", ip) == 0 for ip in ips)


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


# A server that says which Pod it is, bound to argv[1]:argv[2] (the Pod IP via $(POD_IP)).
WHOAMI = (
    "import http.server, os, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        b = os.environ['HOSTNAME'].encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', str(len(b)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b)\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)
POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def whoami(host: str, port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def deployment(name: str, image: str, replicas: int, port: int, bind: str) -> dict[str, Any]:
    labels = {"app": name}
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 2,
                     "containers": [{
                         "name": "web", "image": image, "imagePullPolicy": "Never",
                         "command": ["python3", "-c", WHOAMI, bind, str(port)],
                         "env": [POD_IP_ENV],
                         "ports": [{"name": "http", "containerPort": port}],
                         "readinessProbe": probe,
                         "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2,
                                           "initialDelaySeconds": 3}}]}}},
    }  # fmt: skip


def test_replicas_get_their_own_pod_ip_and_share_a_port(
    kubectl: Kubectl, ns: str, image: str
) -> None:
    """3 replicas serve the same port, each on its own Pod IP, and their probes reach them."""
    name = f"rep{uuid.uuid4().hex[:6]}"
    port = free_port()
    apply(kubectl, ns, deployment(name, image, 3, port, "$(POD_IP)"))
    kubectl("wait", "-n", ns, f"deployment/{name}", "--for=condition=Available", "--timeout=90s")
    wait_for(
        lambda: get(kubectl, ns, "deployment", name)["status"].get("readyReplicas") == 3,
        60,
        "3 ready replicas",
    )
    pods = get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
    assert len(pods) == 3
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3, ips
    for p in pods:
        st = p["status"]
        assert st["phase"] == "Running"
        assert st["podIPs"] == [{"ip": st["podIP"]}]
        assert st["podIP"].startswith("127.")
        assert st["podIP"] != "127.0.0.1"
        assert st["hostIP"] == "127.0.0.1"
        cs = st["containerStatuses"][0]
        assert cs["ready"] is True, cs
        assert cs["restartCount"] == 0, cs
        # Each Pod answers on its own address, as itself.
        assert whoami(st["podIP"], port) == p["metadata"]["name"]
    assert whoami("127.0.0.1", port) == ""  # nothing bound the wildcard address
    time.sleep(4)  # liveness (tcpSocket) probes ran a few times: nothing restarted
    pods = get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
    assert [p["status"]["containerStatuses"][0]["restartCount"] for p in pods] == [0, 0, 0]
    kubectl("delete", "-n", ns, f"deployment/{name}", "--wait=true")
    wait_for(
        lambda: not get(kubectl, ns, "pods", "-l", f"app={name}")["items"], 60, "the Pods gone"
    )
    assert all(whoami(ip, port) == "" for ip in ips)


def test_max_unavailable_0_keeps_the_old_pod_while_the_new_one_cannot_serve(
    kubectl: Kubectl, ns: str, image: str
) -> None:
    """Issue 15 §4: the rollout to a Pod that never becomes ready must keep the old Pod.

    The old Pod binds 0.0.0.0 (as the worker did); the new one, same port, cannot bind it and
    crash-loops. Its readiness probe used to go to 127.0.0.1:<port>, where the OLD Pod answered,
    so the new Pod looked Ready and the Deployment controller deleted the old one. Now the probe
    goes to the new Pod's own IP, and a listener of another Pod there does not count.
    """
    name = f"roll{uuid.uuid4().hex[:6]}"
    port = free_port()
    apply(kubectl, ns, deployment(name, image, 1, port, "0.0.0.0"))  # noqa: S104
    kubectl("wait", "-n", ns, f"deployment/{name}", "--for=condition=Available", "--timeout=90s")
    old = get(kubectl, ns, "pods", "-l", f"app={name}")["items"][0]
    old_name = old["metadata"]["name"]
    assert whoami(old["status"]["podIP"], port) == old_name

    # A new template (one env var more): the new Pod collides with the old one on the port.
    new = deployment(name, image, 1, port, "0.0.0.0")  # noqa: S104
    new["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "V", "value": "2"})
    apply(kubectl, ns, new)

    def new_pods() -> list[dict[str, Any]]:
        items = get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
        return [p for p in items if p["metadata"]["name"] != old_name]

    wait_for(
        lambda: any(
            (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 2
            for p in new_pods()
        ),
        90,
        "the new Pod crash-looping",
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # several probe periods and restarts of the new Pod
        pods = {
            p["metadata"]["name"]: p for p in get(kubectl, ns, "pods", "-l", f"app={name}")["items"]
        }
        assert old_name in pods, "the old Pod was removed during the rollout"
        st = pods[old_name]["status"]
        assert not pods[old_name]["metadata"].get("deletionTimestamp")
        assert st["phase"] == "Running", st
        assert st["containerStatuses"][0]["ready"] is True, st
        for p in new_pods():
            assert (p["status"].get("containerStatuses") or [{}])[0].get("ready") is not True
        time.sleep(1)
    assert whoami(old["status"]["podIP"], port) == old_name
    dep = get(kubectl, ns, "deployment", name)["status"]
    assert dep.get("availableReplicas") == 1, dep
    assert dep.get("updatedReplicas") == 1, dep
    kubectl("delete", "-n", ns, f"deployment/{name}", "--wait=true")
