"""Hundreds of pipelines and tables: the operator converges, whether they exist before it
starts (every restart and upgrade) or arrive in one burst while it runs.

With Kopf's per-object workers capped at 20, more than 20 objects deadlocked the operator:
every worker waited for the `table_refs` index that the next object could never enter. Here
60 pipelines x 5 tables (360 objects) must all be reconciled, under the chart's RBAC, with
workers at 0 replicas (the local node would run one worker per port), each pipeline with its
own topics. The bounds are generous: this is a correctness test, not a benchmark
(`make bench-operator` measures).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.long]

PIPELINES = 60
TABLES = 5
BOUND_SECONDS = 240.0


@pytest.fixture
def scale_ns(cluster: Cluster, env: dict[str, str]) -> Iterator[str]:
    name = f"scale-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    cluster.run("create", "secret", "generic", "pg", "-n", name,
                "--from-literal=username=cdc", "--from-literal=password=pw")  # fmt: skip
    yield name
    drop_finalizers(cluster.kubeconfig, name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}", check=False)
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
    if mine:
        for f in admin.delete_topics(mine, operation_timeout=30).values():
            f.result(60)


def objects(ns: str, env: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for i in range(PIPELINES):
        name, prefix = f"p{i:03d}", f"{ns}-{i:03d}"
        docs.append({
            "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "cassandra": {"contactPoints": ["127.0.0.1:59042"]},
                "debezium": {"topicPrefix": prefix},
                "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                          "deadLetterTopic": f"{prefix}.dlq", "topic": {"partitions": 1}},
                "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc",
                             "schema": "scale", "credentials": {"secretRef": {"name": "pg"}}},
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
    for i in range(0, len(docs), 120):
        cluster.run("apply", "--server-side", "-f", "-",
                    stdin="\n---\n".join(json.dumps(d) for d in docs[i:i + 120]))  # fmt: skip


def _ready(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    if st.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])


def converged(cluster: Cluster, ns: str) -> tuple[int, int]:
    """(pipelines Ready, tables whose status says Ready) right now."""
    out = []
    for kind in ("cdcpipelines", "tablereplications"):
        res = cluster.run("get", kind, "-n", ns, "-o", "json", check=False)
        items = json.loads(res.stdout)["items"] if res.returncode == 0 else []
        out.append(sum(1 for o in items if _ready(o)))
    return out[0], out[1]


def wait_converged(cluster: Cluster, ns: str, op: Operator, since: float) -> float:
    seen: list[tuple[int, int]] = [(0, 0)]

    def done() -> bool:
        assert op.proc is not None
        if op.proc.poll() is not None:
            raise AssertionError(f"the operator exited ({op.proc.returncode}); log:\n"
                                 f"{op.logs()[-6000:]}")  # fmt: skip
        seen[0] = converged(cluster, ns)
        return seen[0] == (PIPELINES, PIPELINES * TABLES)

    try:
        wait_for(done, BOUND_SECONDS, "every pipeline and table Ready")
    except AssertionError as e:
        if op.proc is not None and op.proc.poll() is not None:
            raise  # done() said so, with the log
        raise AssertionError(f"{e} (got {seen[0]}); log:\n{op.logs()[-3000:]}") from None
    return time.monotonic() - since


def assert_healthy(op: Operator) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.liveness_port}/healthz") as r:
        assert r.status == 200
        assert json.loads(r.read())["progress"]["pendingPipelines"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics") as r:
        text = r.read().decode()
    assert "cdc_operator_pending_pipelines 0.0" in text
    assert "cdc_operator_stalled 0.0" in text


def test_hundreds_present_before_the_operator_starts(
    cluster: Cluster, scale_ns: str, env: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    op = Operator(cluster, scale_ns, tmp_path)
    apply_all(cluster, objects(scale_ns, env))
    try:
        started = time.monotonic()
        op.start(CDC_OPERATOR_STATUS_INTERVAL="15")
        took = wait_converged(cluster, scale_ns, op, started)
        print(f"{PIPELINES} pipelines x {TABLES} tables present at start: Ready in {took:.1f} s")
        assert_healthy(op)
    finally:
        op.stop()


def test_hundreds_applied_in_one_burst_while_running(
    cluster: Cluster, scale_ns: str, env: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    op = Operator(cluster, scale_ns, tmp_path).start(CDC_OPERATOR_STATUS_INTERVAL="15")
    try:
        wait_for(lambda: _alive(op), 30, "the operator's health endpoint")
        started = time.monotonic()
        apply_all(cluster, objects(scale_ns, env))
        took = wait_converged(cluster, scale_ns, op, started)
        print(f"{PIPELINES} pipelines x {TABLES} tables applied in a burst: Ready in {took:.1f} s")
        assert_healthy(op)
    finally:
        op.stop()


def _alive(op: Operator) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.liveness_port}/healthz") as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def test_liveness_fails_when_pending_work_makes_no_progress(
    cluster: Cluster, scale_ns: str, env: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    """No pass can run (0 pass slots): the operator answers, but reports itself stuck."""
    op = Operator(cluster, scale_ns, tmp_path).start(
        CDC_OPERATOR_MAX_PASSES="0", CDC_OPERATOR_STALL_SECONDS="5"
    )
    try:
        wait_for(lambda: _alive(op), 30, "the operator's health endpoint")
        apply_all(cluster, objects(scale_ns, env)[: TABLES + 1])

        def unhealthy() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{op.liveness_port}/healthz").close()
            except urllib.error.HTTPError as e:
                return e.code == 500
            return False

        wait_for(unhealthy, 60, f"liveness to fail; log:\n{op.logs()[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics") as r:
            text = r.read().decode()
        assert "cdc_operator_stalled 1.0" in text
        assert "cdc_operator_pending_pipelines 1.0" in text
    finally:
        op.stop()
