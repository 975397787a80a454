"""A Kafka that is down must not starve the pipelines on another Kafka.

Against the stack's real API server and Kafka: HEALTHY pipelines on the stack's Kafka are
first reconciled alone (the baseline), then, by a fresh operator in a fresh namespace, together
with BROKEN pipelines whose bootstrap servers refuse connections (127.0.0.1:1), applied just
before them. The healthy ones must reach Ready no slower than the baseline (plus a margin for a
shared 2-core machine), within BOUND_SECONDS; the broken ones must say why (`Ready=False`,
reason `KafkaUnavailable`, on the pipeline and its tables). Without the per-Kafka circuit
breaker every broken pass held a queue worker for a client timeout, and with as many broken
pipelines as workers the healthy ones waited behind them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.long]

HEALTHY = 20
BROKEN = 20
TABLES = 3
BOUND_SECONDS = 120.0
MARGIN = 1.5  # healthy-with-broken may take up to 1.5 x the baseline + 10 s (machine noise)


@pytest.fixture
def namespaces(cluster: Cluster, env: dict[str, str]) -> Iterator[list[str]]:
    made: list[str] = []

    def make() -> str:
        name = f"outage-{uuid.uuid4().hex[:6]}"
        cluster.run("create", "namespace", name)
        cluster.run("create", "secret", "generic", "pg", "-n", name,
                    "--from-literal=username=cdc", "--from-literal=password=pw")  # fmt: skip
        made.append(name)
        return name

    yield [make(), make()]
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    for name in made:
        drop_finalizers(cluster.kubeconfig, name)
        cluster.run("delete", "namespace", name, "--wait=false", check=False)
        cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}",
                    check=False)  # fmt: skip
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
        if mine:
            for f in admin.delete_topics(mine, operation_timeout=30).values():
                f.result(60)


def objects(ns: str, prefix: str, count: int, servers: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for i in range(count):
        name = f"{prefix}{i:02d}"
        docs.append({
            "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "cassandra": {"contactPoints": ["127.0.0.1:59042"]},
                "debezium": {"topicPrefix": f"{ns}-{name}"},
                "kafka": {"bootstrapServers": servers, "deadLetterTopic": f"{ns}-{name}.dlq",
                          "topic": {"partitions": 1}},
                "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc",
                             "schema": "outage", "credentials": {"secretRef": {"name": "pg"}}},
                "worker": {"image": "localhost/cass-cdc-pg:dev", "replicas": 0},
            },
        })  # fmt: skip
        for t in range(TABLES):
            docs.append({
                "apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
                "metadata": {"name": f"{name}-t{t}", "namespace": ns},
                "spec": {"pipelineRef": {"name": name},
                         "source": {"keyspace": "shop", "table": f"t{t}"}},
            })  # fmt: skip
    return docs


def apply_all(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    for i in range(0, len(docs), 100):
        cluster.run("apply", "--server-side", "-f", "-",
                    stdin="\n---\n".join(json.dumps(d) for d in docs[i:i + 100]))  # fmt: skip


def ready(obj: dict[str, Any]) -> dict[str, Any] | None:
    st = obj.get("status") or {}
    if st.get("observedGeneration") != obj["metadata"].get("generation"):
        return None
    return next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)


def states(cluster: Cluster, ns: str) -> dict[tuple[str, str], dict[str, Any] | None]:
    out: dict[tuple[str, str], dict[str, Any] | None] = {}
    for kind in ("cdcpipelines", "tablereplications"):
        res = cluster.run("get", kind, "-n", ns, "-o", "json", check=False)
        for o in json.loads(res.stdout)["items"] if res.returncode == 0 else []:
            out[(kind, o["metadata"]["name"])] = ready(o)
    return out


def healthy_ready(cluster: Cluster, ns: str, op: Operator, since: float) -> float:
    def done() -> bool:
        s = states(cluster, ns)
        ok = [k for k, c in s.items() if k[1].startswith("h") and c and c["status"] == "True"]
        return len(ok) == HEALTHY * (1 + TABLES)

    wait_for(done, BOUND_SECONDS, f"every healthy pipeline and table Ready; log:\n"
                                  f"{op.logs()[-3000:]}")  # fmt: skip
    return time.monotonic() - since


def test_an_unreachable_kafka_does_not_starve_pipelines_on_another(
    cluster: Cluster, namespaces: list[str], env: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    servers = env["KAFKA_BOOTSTRAP_SERVERS"]
    alone_ns, mixed_ns = namespaces

    # The baseline: the healthy pipelines alone.
    (tmp_path / "alone").mkdir()
    op = Operator(cluster, alone_ns, tmp_path / "alone").start(CDC_OPERATOR_STATUS_INTERVAL="15")
    try:
        time.sleep(3)
        started = time.monotonic()
        apply_all(cluster, objects(alone_ns, "h", HEALTHY, servers))
        alone = healthy_ready(cluster, alone_ns, op, started)
    finally:
        op.stop()

    # The same beside as many pipelines whose Kafka refuses connections.
    (tmp_path / "mixed").mkdir()
    op = Operator(cluster, mixed_ns, tmp_path / "mixed").start(CDC_OPERATOR_STATUS_INTERVAL="15")
    try:
        time.sleep(3)
        # The broken ones first, so that their passes (and first probes of the unreachable
        # Kafka) are queued and running when the healthy ones arrive; the clock starts then.
        apply_all(cluster, objects(mixed_ns, "b", BROKEN, "127.0.0.1:1"))
        started = time.monotonic()
        apply_all(cluster, objects(mixed_ns, "h", HEALTHY, servers))
        mixed = healthy_ready(cluster, mixed_ns, op, started)
        print(
            f"{HEALTHY} healthy pipelines x {TABLES} tables Ready: alone {alone:.1f} s, "
            f"beside {BROKEN} on an unreachable Kafka {mixed:.1f} s"
        )
        assert mixed <= alone * MARGIN + 10, (alone, mixed)

        def broken_say_why() -> bool:
            s = states(cluster, mixed_ns)
            broken = {k: c for k, c in s.items() if k[1].startswith("b")}
            return len(broken) == BROKEN * (1 + TABLES) and all(
                c is not None and c["status"] == "False" and c["reason"] == "KafkaUnavailable"
                for c in broken.values()
            )

        wait_for(broken_say_why, 60, "every broken pipeline and table Ready=False "
                                     f"KafkaUnavailable; log:\n{op.logs()[-3000:]}")  # fmt: skip
        body = json.loads(cluster.run("get", "cdcp", "b00", "-n", mixed_ns, "-o", "json").stdout)
        cond = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
        assert "127.0.0.1:1" in cond["message"], cond
        # Still true a while later: the healthy ones stay Ready while the broken ones retry.
        time.sleep(5)
        s = states(cluster, mixed_ns)
        assert all(c and c["status"] == "True" for k, c in s.items() if k[1].startswith("h"))
    finally:
        op.stop()
