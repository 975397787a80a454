"""The operator with a pipeline on the stack's secure endpoints (issue #12): OpenBao over https
with a CA bundle, Kafka SASL_SSL with the operator's own SCRAM user for its admin calls, Redis
TLS as the ACL user, PostgreSQL verify-full. The rendered ConfigMap holds the CA files the
worker config points at, and no secret; the workers' Secret never holds the operator's login."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml

from tests.integration.test_operator import _secret, cond, table
from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s]


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"sec-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    yield name
    drop_finalizers(cluster.kubeconfig, name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}", check=False)


def secure_pipeline(ns: str, env: dict[str, str], ca: str) -> dict[str, Any]:
    spec = {
        "cassandra": {"contactPoints": ["127.0.0.1:59042"]},
        "debezium": {"topicPrefix": f"{env['KAFKA_SECURE_TOPIC_PREFIX']}{ns}",
                     "config": {"http.port": "58999"}},
        "kafka": {"bootstrapServers": env["KAFKA_SASL_SSL_BOOTSTRAP"],
                  "securityProtocol": "SASL_SSL", "saslMechanism": env["KAFKA_SASL_MECHANISM"],
                  "caBundle": ca, "credentials": {"vaultPath": f"{ns}/kafka-worker"},
                  "operatorCredentials": {"vaultPath": f"{ns}/kafka-operator"},
                  "deadLetterTopic": f"{env['KAFKA_SECURE_DLQ_PREFIX']}{ns}",
                  "topic": {"partitions": 1}},
        "postgres": {"host": env["PG_SECURE_HOST"], "port": int(env["PG_SECURE_PORT"]),
                     "database": "cdc", "schema": "sec", "sslMode": "verify-full",
                     "caBundle": ca, "credentials": {"vaultPath": f"{ns}/postgres"}},
        "redis": {"url": env["REDIS_TLS_URL"], "caBundle": ca,
                  "credentials": {"vaultPath": f"{ns}/redis"}},
        "vault": {"address": env["VAULT_TLS_ADDR"], "caBundle": ca, "refreshInterval": "5m",
                  "auth": {"tokenSecretRef": {"name": "vault-token"}}},
        "worker": {"image": "localhost/cass-cdc-pg:not-built", "replicas": 1},
    }  # fmt: skip
    return {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
            "metadata": {"name": "shop", "namespace": ns}, "spec": spec}  # fmt: skip


def test_secure_pipeline_reaches_topics_and_secrets_ready(
    cluster: Cluster, ns: str, env: dict[str, str], tmp_path: Path
) -> None:
    ca = Path(env["CDC_STACK_CA"]).read_text()

    def pw(var: str) -> str:
        return Path(env[var]).read_text().strip()

    vault = hvac.Client(url=env["VAULT_TLS_ADDR"], token=env["VAULT_TOKEN"],
                        verify=env["CDC_STACK_CA"])  # fmt: skip
    for path, secret in {
        "postgres": {"username": env["PG_APP_USER"], "password": pw("PG_APP_PASSWORD_FILE")},
        "kafka-worker": {"username": env["KAFKA_WORKER_USER"],
                         "password": pw("KAFKA_WORKER_PASSWORD_FILE")},
        "kafka-operator": {"username": env["KAFKA_OPERATOR_USER"],
                           "password": pw("KAFKA_OPERATOR_PASSWORD_FILE")},
        "redis": {"password": pw("REDIS_PASSWORD_FILE")},
    }.items():  # fmt: skip
        vault.secrets.kv.v2.create_or_update_secret(path=f"{ns}/{path}", secret=secret,
                                                    mount_point="secret")  # fmt: skip
    cluster.run("create", "secret", "generic", "vault-token", "-n", ns,
                f"--from-literal=token={env['VAULT_TOKEN']}")  # fmt: skip
    op = Operator(cluster, ns, tmp_path).start()
    try:
        cluster.apply(
            [secure_pipeline(ns, env, ca), table(ns, "orders", "shop", "sales", "orders")]
        )

        def ready() -> bool:
            p = cluster.get("cdcp", "shop", ns)
            return (cond(p, "TopicsReady").get("status") == "True"
                    and cond(p, "SecretsReady").get("status") == "True")  # fmt: skip

        wait_for(ready, 90, "TopicsReady and SecretsReady over https and SASL_SSL")
        p = cluster.get("cdcp", "shop", ns) or {}
        owned = p["status"].get("ownedTopics") or []
        assert f"{env['KAFKA_SECURE_DLQ_PREFIX']}{ns}" in owned
        # The workers' Secret: their own identities only, never the operator's.
        creds = _secret(cluster, ns)
        assert creds["KAFKA_USERNAME"] == env["KAFKA_WORKER_USER"]
        assert not any(k.startswith("OPERATOR_") for k in creds)
        assert pw("KAFKA_OPERATOR_PASSWORD_FILE") not in json.dumps(creds)
        # The ConfigMap: worker.yaml pointing at the CA files beside it, and no secret.
        cm = cluster.get("configmap", "shop-worker", ns) or {}
        data = cm["data"]
        for f in ("postgres-ca.pem", "kafka-ca.pem", "redis-ca.pem"):
            assert data[f] == ca
        doc = yaml.safe_load(data["worker.yaml"])
        assert doc["postgres"]["sslRootCert"] == "/etc/cdc/postgres-ca.pem"
        assert doc["postgres"]["sslMode"] == "verify-full"
        assert doc["kafka"]["sslCaLocation"] == "/etc/cdc/kafka-ca.pem"
        assert doc["kafka"]["securityProtocol"] == "SASL_SSL"
        assert doc["redis"] == {"url": env["REDIS_TLS_URL"], "caFile": "/etc/cdc/redis-ca.pem"}
        text = json.dumps(data)
        for var in ("PG_APP_PASSWORD_FILE", "KAFKA_WORKER_PASSWORD_FILE",
                    "KAFKA_OPERATOR_PASSWORD_FILE", "REDIS_PASSWORD_FILE"):  # fmt: skip
            assert pw(var) not in text
        # The connector's properties: TLS trust and mechanism, never a password or JAAS line.
        conn = json.dumps((cluster.get("configmap", "shop-debezium", ns) or {})["data"])
        assert "kafka.producer.sasl.mechanism=SCRAM-SHA-512" in conn
        assert "jaas" not in conn
        # The Deployment mounts the CA files and names only the workers' keys.
        dep = cluster.get("deployment", "shop-worker", ns) or {}
        pod = dep["spec"]["template"]["spec"]
        items = {i["path"] for i in pod["volumes"][0]["configMap"]["items"]}
        assert items == {"worker.yaml", "postgres-ca.pem", "kafka-ca.pem", "redis-ca.pem"}
        names = {e["name"] for e in pod["containers"][0]["env"]}
        assert not any(n.startswith("OPERATOR_") for n in names)
    finally:
        op.stop()
