"""The operator against the stack's real API server, Kafka, OpenBao and Redis.

The operator runs as a process under a ServiceAccount token bound to the Role
from `cdc_operator.rbac` (the chart's rules), so a missing permission fails here.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml
from confluent_kafka.admin import AdminClient

from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"op-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    yield name
    drop_finalizers(cluster.kubeconfig, name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}", check=False)


def pipeline(ns: str, name: str, env: dict[str, str], **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cassandra": {"contactPoints": ["127.0.0.1:59042"]},
        "debezium": {"topicPrefix": f"{ns}", "config": {"http.port": "58999"}},
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                  "deadLetterTopic": f"{ns}.dlq", "topic": {"partitions": 2}},
        "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc", "schema": "op",
                     "credentials": {"vaultPath": f"{ns}/postgres"}},
        "redis": {"url": env["REDIS_URL"]},
        "vault": {"address": env["VAULT_ADDR"], "refreshInterval": "2s",
                  "auth": {"tokenSecretRef": {"name": "vault-token"}}},
        # An image the local node does not have: the workers stay visibly not ready, so the
        # test asserts the operator's reporting without depending on the workers' fate.
        "worker": {"image": "localhost/cass-cdc-pg:not-built", "replicas": 1},
    }  # fmt: skip
    spec.update(kw)
    return {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


def table(ns: str, name: str, pipe: str, ks: str, tbl: str) -> dict[str, Any]:
    return {"apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"pipelineRef": {"name": pipe},
                     "source": {"keyspace": ks, "table": tbl}}}  # fmt: skip


def cond(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def _vault(env: dict[str, str]) -> hvac.Client:
    return hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])


def _secret(cluster: Cluster, ns: str) -> dict[str, str]:
    s = cluster.get("secret", "shop-credentials", ns) or {}
    return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}


def test_invalid_objects_are_rejected_naming_the_field(cluster: Cluster, ns: str, env: Any) -> None:
    bad = pipeline(ns, "bad", env)
    bad["spec"]["worker"]["replicas"] = -1
    res = cluster.apply(bad, check=False)
    assert res.returncode != 0
    assert "spec.worker.replicas" in res.stderr
    # CEL rules run once the schema checks pass.
    bad = pipeline(ns, "bad", env)
    bad["spec"]["postgres"]["credentials"] = {"vaultPath": "x", "secretRef": {"name": "other"}}
    res = cluster.apply(bad, check=False)
    assert res.returncode != 0
    assert "spec.postgres.credentials" in res.stderr
    assert "exactly one of vaultPath or secretRef" in res.stderr
    good = pipeline(ns, "good", env)
    cluster.apply(good)
    good["spec"]["kafka"]["topic"]["partitions"] = 1
    res = cluster.apply(good, check=False)
    assert res.returncode != 0
    assert "partitions can only grow" in res.stderr


@pytest.mark.exclusive  # stops a shared stack service
def test_pipeline_lifecycle(cluster: Cluster, ns: str, env: dict[str, str], tmp_path: Path) -> None:
    vault = _vault(env)
    vault.secrets.kv.v2.create_or_update_secret(
        path=f"{ns}/postgres", secret={"username": "cdc", "password": "pw-1"}, mount_point="secret"
    )
    cluster.run("create", "secret", "generic", "vault-token", "-n", ns,
                f"--from-literal=token={env['VAULT_TOKEN']}")  # fmt: skip
    op = Operator(cluster, ns, tmp_path).start()
    try:
        cluster.apply([pipeline(ns, "shop", env), table(ns, "orders", "shop", "sales", "orders"),
                       table(ns, "users", "shop", "sales", "users")])  # fmt: skip

        def children_ready() -> bool:
            p = cluster.get("cdcp", "shop", ns)
            return (cond(p, "TopicsReady").get("status") == "True"
                    and cond(p, "SecretsReady").get("status") == "True"
                    and (p or {}).get("status", {}).get("tables") == 2
                    and cluster.get("deployment", "shop-worker", ns) is not None)  # fmt: skip

        wait_for(children_ready, 60, f"children; operator log:\n{op.logs()[-3000:]}")
        p = cluster.get("cdcp", "shop", ns)
        assert p is not None
        uid = p["metadata"]["uid"]
        for kind, name in [("configmap", "shop-worker"), ("configmap", "shop-debezium"),
                           ("secret", "shop-credentials"), ("deployment", "shop-worker"),
                           ("service", "shop-worker"), ("pdb", "shop-worker")]:  # fmt: skip
            obj = cluster.get(kind, name, ns)
            assert obj is not None, f"{kind}/{name} missing"
            assert [o["uid"] for o in obj["metadata"]["ownerReferences"]] == [uid]
        worker_cfg = yaml.safe_load(
            cluster.get("configmap", "shop-worker", ns)["data"]["worker.yaml"]
        )  # type: ignore[index]
        assert sorted(t["topic"] for t in worker_cfg["tables"]) == [
            f"{ns}.sales.orders",
            f"{ns}.sales.users",
        ]
        assert "pw-1" not in json.dumps(cluster.get("configmap", "shop-worker", ns))
        props = next(iter(cluster.get("configmap", "shop-debezium", ns)["data"].values()))  # type: ignore[index]
        assert f"topic.prefix={ns}" in props
        assert "sales.users" in props
        topics = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]}).list_topics(
            timeout=10).topics  # fmt: skip
        assert len(topics[f"{ns}.sales.orders"].partitions) == 2
        assert f"{ns}.dlq" in topics
        assert _secret(cluster, ns) == {"POSTGRES_USERNAME": "cdc", "POSTGRES_PASSWORD": "pw-1"}

        # kubectl get shows the columns with real values.
        out = cluster.run("get", "cdcpipelines", "-n", ns).stdout
        assert out.split("\n")[0].split() == ["NAME", "READY", "REASON", "TABLES", "WORKERS",
                                              "LAG", "AGENTS", "AGE"]  # fmt: skip
        row = out.split("\n")[1].split()
        assert row[:3] == ["shop", "False", "WorkersNotReady"]
        assert row[3:5] == ["2", "0/1"]
        out = cluster.run("get", "tr", "-n", ns).stdout.split("\n")
        assert out[0].split()[:6] == ["NAME", "PIPELINE", "SOURCE", "TARGET", "READY", "LAG"]
        assert out[1].split()[:5] == ["orders", "shop", "sales.orders", "op.orders", "False"]

        # The operator's own metrics mirror the conditions.
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics") as r:
            text = r.read().decode()
        assert (f'cdc_operator_pipeline_condition{{condition="TopicsReady",namespace="{ns}",'
                f'pipeline="shop"}} 1.0') in text  # fmt: skip

        # Rotating the secret in OpenBao updates the Secret and rolls the workers.
        dep = cluster.get("deployment", "shop-worker", ns)
        old_hash = dep["spec"]["template"]["metadata"]["annotations"]["casscdc.io/secret-version"]  # type: ignore[index]
        vault.secrets.kv.v2.create_or_update_secret(
            path=f"{ns}/postgres", secret={"username": "cdc", "password": "pw-2"},
            mount_point="secret",
        )  # fmt: skip
        wait_for(lambda: _secret(cluster, ns).get("POSTGRES_PASSWORD") == "pw-2", 30, "rotation")

        def rolled() -> bool:
            d = cluster.get("deployment", "shop-worker", ns) or {}
            ann = d["spec"]["template"]["metadata"]["annotations"]
            return bool(ann["casscdc.io/secret-version"] != old_hash)

        wait_for(rolled, 30, "the pod template to change")

        # Deleting a table shrinks the configs.
        cluster.run("delete", "tr", "users", "-n", ns)

        def shrunk() -> bool:
            cm = cluster.get("configmap", "shop-worker", ns) or {"data": {"worker.yaml": ""}}
            tables = yaml.safe_load(cm["data"]["worker.yaml"])["tables"]
            return [t["topic"] for t in tables] == [f"{ns}.sales.orders"]

        wait_for(shrunk, 30, "the worker config to drop the table")

        # Restarting the operator converges without duplicating anything.
        op.stop(signal.SIGKILL)
        op.start()
        cluster.apply(table(ns, "users", "shop", "sales", "users"))
        wait_for(lambda: (cluster.get("cdcp", "shop", ns) or {}).get("status", {}).get("tables")
                 == 2, 60, "convergence after restart")  # fmt: skip
        cms = cluster.run("get", "configmaps", "-n", ns, "-l", "casscdc.io/pipeline=shop",
                          "-o", "name").stdout.split()  # fmt: skip
        assert sorted(cms) == [
            "configmap/shop-agent-driver", "configmap/shop-debezium", "configmap/shop-worker",
        ]  # fmt: skip
        driver = cluster.get("configmap", "shop-agent-driver", ns) or {}
        assert "127.0.0.1:" in driver["data"]["application.conf"]  # the sidecar's own node

        # OpenBao down: SecretsReady=False, the last Secret kept.
        subprocess.run([str(REPO / "hack/stack"), "down", "vault"], check=True)
        try:
            wait_for(lambda: cond(cluster.get("cdcp", "shop", ns), "SecretsReady").get("status")
                     == "False", 30, "SecretsReady=False")  # fmt: skip
            c = cond(cluster.get("cdcp", "shop", ns), "SecretsReady")
            assert c["reason"] == "VaultUnreachable"
            assert "keeping the last Secret" in c["message"]
            assert _secret(cluster, ns)["POSTGRES_PASSWORD"] == "pw-2"
        finally:
            subprocess.run([str(REPO / "hack/stack"), "up", "vault"], check=True)

        # Deleting the pipeline removes everything it owns (garbage collection).
        cluster.run("delete", "cdcp", "shop", "-n", ns, "--wait=true", "--timeout=60s")

        def gone() -> bool:
            return all(cluster.get(k, n, ns) is None for k, n in [
                ("configmap", "shop-worker"), ("deployment", "shop-worker"),
                ("secret", "shop-credentials")])  # fmt: skip

        wait_for(gone, 60, "owned objects to be garbage-collected")
        forbidden = [line for line in op.logs().splitlines() if "Forbidden" in line]
        assert forbidden == [], forbidden[:3]  # a permission missing from cdc_operator.rbac
    finally:
        op.stop()
