"""The operator's part of the chaos run: `cdc-operator` as a process keeping the pipeline's status.

The topology stack has no Kubernetes of its own; the operator runs against the default stack's
control plane (`hack/stack up k8s` there is idempotent and shared by the test suite) in a
namespace of its own, and everything it manages points at the topology stack: the CdcPipeline
has the run's topics (adopted), the ring's contact points, PostgreSQL/Redis/Kafka over TLS, and
its credentials in the topology stack's OpenBao (token auth). Its workers are at `replicas: 0`
(there is no kubelet for the topology stack): the three `cdc-worker` processes of the run are
the pipeline's workers (same consumer group `cdc.<namespace>.<pipeline>`, same rendered
config), so the lag and status the operator keeps are theirs. What this shows about the
operator is therefore its reconcile/status loop surviving SIGKILL and an OpenBao outage, not
a Deployment being rolled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac

from tests.support import cassandra as stack_cassandra
from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import wait_for
from tests.topology.chaos_faults import Injected
from tests.topology.chaos_rig import REPO, Pipeline

K8S_VARS = ("CDC_STACK_STATE", "CDC_STACK_PORT_OFFSET", "CDC_STACK_CASSANDRA_NODES",
            "CDC_STACK_KAFKA_BROKERS", "CDC_DEBEZIUM_TOPIC_PREFIX")  # fmt: skip


def default_stack_k8s() -> dict[str, str]:
    """`hack/stack up k8s` of the DEFAULT stack (idempotent), and its env."""
    env = {k: v for k, v in os.environ.items() if k not in K8S_VARS}
    stack = str(REPO / "hack" / "stack")
    subprocess.run([stack, "up", "k8s"], env=env, check=True, capture_output=True, timeout=1800)
    out = subprocess.run([stack, "env"], env=env, check=True, capture_output=True, text=True)
    result: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        result[key] = value.strip("'\"")
    return result


def cond(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


@dataclass
class OperatorPart:
    pipeline: Pipeline
    tmp: Path
    cluster: Cluster | None = None
    operator: Operator | None = None
    ready: bool = False
    error: str | None = None

    @property
    def ns(self) -> str:
        return self.pipeline.namespace

    def _vault(self) -> hvac.Client:
        env = self.pipeline.env
        return hvac.Client(url=env["VAULT_TLS_ADDR"], token=env["VAULT_TOKEN"],
                           verify=env["CDC_STACK_CA"])  # fmt: skip

    def seed_vault(self) -> None:
        """The pipeline's credentials in OpenBao (the stack's is a dev server: in memory)."""
        env = self.pipeline.env

        def pw(var: str) -> str:
            return Path(env[var]).read_text().strip()

        vault = self._vault()
        for path, secret in {
            "postgres": {"username": env["PG_APP_USER"], "password": pw("PG_APP_PASSWORD_FILE")},
            "kafka-worker": {"username": env["KAFKA_WORKER_USER"],
                             "password": pw("KAFKA_WORKER_PASSWORD_FILE")},
            "kafka-operator": {"username": env["KAFKA_OPERATOR_USER"],
                               "password": pw("KAFKA_OPERATOR_PASSWORD_FILE")},
            "redis": {"password": pw("REDIS_PASSWORD_FILE")},
        }.items():  # fmt: skip
            vault.secrets.kv.v2.create_or_update_secret(
                path=f"{self.ns}/{path}", secret=secret, mount_point="secret"
            )

    def manifests(self) -> list[dict[str, Any]]:
        env, p = self.pipeline.env, self.pipeline
        ca = Path(env["CDC_STACK_CA"]).read_text()
        spec = {
            "cassandra": stack_cassandra.pipeline_spec(env),
            "debezium": {"topicPrefix": env["DEBEZIUM_TOPIC_PREFIX"]},
            "kafka": {"bootstrapServers": env["KAFKA_SASL_SSL_BOOTSTRAP"],
                      "securityProtocol": "SASL_SSL", "saslMechanism": env["KAFKA_SASL_MECHANISM"],
                      "caBundle": ca, "credentials": {"vaultPath": f"{self.ns}/kafka-worker"},
                      "operatorCredentials": {"vaultPath": f"{self.ns}/kafka-operator"},
                      "deadLetterTopic": p.dlq, "adoptExistingTopics": True,
                      "topic": {"partitions": 6, "replicationFactor": 3}},
            "postgres": {"host": env["PG_SECURE_HOST"], "port": int(env["PG_SECURE_PORT"]),
                         "database": "cdc", "schema": p.schema, "sslMode": "verify-full",
                         "caBundle": ca, "credentials": {"vaultPath": f"{self.ns}/postgres"}},
            "redis": {"url": env["REDIS_TLS_URL"], "caBundle": ca,
                      "credentials": {"vaultPath": f"{self.ns}/redis"}},
            "vault": {"address": env["VAULT_TLS_ADDR"], "caBundle": ca, "refreshInterval": "1m",
                      "auth": {"tokenSecretRef": {"name": "vault-token"}}},
            "worker": {"image": "localhost/cass-cdc-pg:dev", "replicas": 0},
        }  # fmt: skip
        docs: list[dict[str, Any]] = [
            {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
             "metadata": {"name": p.name, "namespace": self.ns}, "spec": spec},
            stack_cassandra.secret_manifest(env, self.ns),
        ]  # fmt: skip
        for t in ("ev", "kv"):
            docs.append({"apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
                         "metadata": {"name": t, "namespace": self.ns},
                         "spec": {"pipelineRef": {"name": p.name},
                                  "source": {"keyspace": p.keyspace, "table": t}}})  # fmt: skip
        return docs

    def start(self) -> None:
        k8s = default_stack_k8s()
        self.cluster = Cluster(k8s)
        self.cluster.run("create", "namespace", self.ns)
        self.seed_vault()
        token = self.pipeline.env["VAULT_TOKEN"]
        self.cluster.run("create", "secret", "generic", "vault-token", "-n", self.ns,
                         f"--from-literal=token={token}")  # fmt: skip
        self.operator = Operator(self.cluster, self.ns, self.tmp).start()
        self.cluster.apply(self.manifests())
        # A Python start takes minutes when the 2 cores run at a load average of 40+.
        wait_for(self.keeping_status, 600, "the operator keeping the pipeline's status")

    def start_quietly(self, log: Callable[[str], None]) -> None:
        """`start`, on the run's side thread: a failure is logged and leaves `ready` False."""
        try:
            self.start()
        except (AssertionError, OSError, RuntimeError, subprocess.SubprocessError) as e:
            self.error = f"{type(e).__name__}: {e}"[:300]
            log(f"operator part left out: {self.error}")
            return
        self.ready = True
        log("operator keeping the pipeline's status")

    def status(self) -> dict[str, Any]:
        assert self.cluster is not None
        return (self.cluster.get("cdcp", self.pipeline.name, self.ns) or {}).get("status") or {}

    def keeping_status(self) -> bool:
        s = self.status()
        c = {x["type"]: x["status"] for x in s.get("conditions") or []}
        return c.get("SecretsReady") == "True" and (s.get("lag") or {}).get("events") is not None

    def metrics_target(self) -> str | None:
        return None if self.operator is None else f"127.0.0.1:{self.operator.metrics_port}"

    def kill(self, p: Pipeline) -> Injected:
        """SIGKILL the operator, start it again; back when it has written the status again."""
        if not self.ready:
            out = Injected("operator SIGKILL (operator not keeping the status)", "operator",
                           time.time())  # fmt: skip
            out.notes.append(f"skipped: {self.error or 'the operator had not started yet'}")
            return out
        assert self.operator is not None
        assert self.operator.proc is not None
        before = self.status()
        out = Injected("operator SIGKILL", "operator", time.time())
        self.operator.proc.send_signal(signal.SIGKILL)
        self.operator.proc.wait(30)
        time.sleep(1)
        self.operator.start()

        def rewritten() -> bool:
            s = self.status()
            return s.get("lag") != before.get("lag") and self.keeping_status()

        wait_for(rewritten, 180, "the restarted operator writing the pipeline's status")
        out.restored = time.time() - out.injected
        out.notes.append("workers at replicas 0: what is measured is the status loop")
        return out

    def after_vault_restart(self) -> None:
        """OpenBao dev server lost its KV data with the process: put the credentials back (a
        production OpenBao keeps them), then wait for SecretsReady again."""
        self.seed_vault()
        if self.ready:
            wait_for(self.keeping_status, 240, "SecretsReady again after the OpenBao outage")

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.cluster is not None:
            drop_finalizers(self.cluster.kubeconfig, self.ns)
            self.cluster.run("delete", "namespace", self.ns, "--wait=false", check=False)
            self.cluster.run("delete", "clusterrole,clusterrolebinding",
                             f"cdc-operator-{self.ns}", check=False)  # fmt: skip
