"""Verify and backfill through the operator: Indexed Jobs on the local node, InSync in status.

A table with rows written before the pipeline existed (client timestamps an hour old, so none
counts as in flight) gets a backfill Job (2 indexes in parallel) once the pipeline is ready,
then a verify Job: `IN-SYNC True`. A row deleted by hand in PostgreSQL makes the next verify
fail (`InSync=False`, the count in the message); with `repair: true` the next one repairs it
(`InSync=True, Repaired`) and PostgreSQL equals Cassandra again.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cassandra.cluster import Session

from tests.support import cassandra as stack_cassandra
from tests.support.kube import Cluster as Kube
from tests.support.kube import Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s]
REPO = Path(__file__).resolve().parents[2]
ROWS = 120


@pytest.fixture(scope="module")
def image() -> str:
    res = subprocess.run(["make", "-s", "image"], cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"make image failed:\n{res.stdout}\n{res.stderr}", pytrace=False)
    return "localhost/cass-cdc-pg:dev"


@pytest.fixture
def source(stack: Callable[..., dict[str, str]]) -> Iterator[tuple[Session, str]]:
    env = stack("cassandra", "node")
    cluster = stack_cassandra.cluster(env)
    session = cluster.connect()
    ks = f"scan_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.orders (p int, c int, v text, PRIMARY KEY (p, c))")
    old = int((time.time() - 3600) * 1_000_000)
    ins = session.prepare(f"INSERT INTO {ks}.orders (p, c, v) VALUES (?, ?, ?) USING TIMESTAMP ?")
    for i in range(ROWS):
        session.execute(ins, (i % 30, i, f"v{i}", old + i))
    yield session, ks
    session.execute(f"DROP KEYSPACE {ks}")
    cluster.shutdown()


@pytest.fixture
def ns(cluster: Kube, env: dict[str, str]) -> Iterator[str]:
    name = f"scan-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    cluster.run("create", "secret", "generic", "pg", "-n", name,
                "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
    cluster.apply(stack_cassandra.secret_manifest(env, name))  # the operator role's login
    yield name
    drop_finalizers(cluster.kubeconfig, name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}", check=False)


def _insync(cluster: Kube, ns: str) -> dict[str, Any]:
    tr = cluster.get("tr", "orders", ns) or {}
    for c in (tr.get("status") or {}).get("conditions") or []:
        if c["type"] == "InSync":
            return c  # type: ignore[no-any-return]
    return {}


def test_backfill_then_verify_detect_and_repair_through_the_operator(
    cluster: Kube, env: dict[str, str], source: tuple[Session, str], ns: str, image: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    _, ks = source
    schema = f"s_{ks}"
    pipe = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {
            "cassandra": stack_cassandra.pipeline_spec(env, manageTableCdc=True),
            "debezium": {"topicPrefix": ns},
            "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                      "deadLetterTopic": f"{ns}.dlq", "topic": {"partitions": 1}},
            "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc",
                         "schema": schema, "sslMode": "disable",
                         "credentials": {"secretRef": {"name": "pg"}}},
            "redis": {"url": env["REDIS_URL"]},
            "worker": {"image": image, "imagePullPolicy": "Never", "replicas": 0},
        },
    }  # fmt: skip
    table = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"pipelineRef": {"name": "p"}, "source": {"keyspace": ks, "table": "orders"},
                 "backfill": {"enabled": True, "parallelism": 2},
                 "verify": {"interval": "1h", "parallelism": 2}},
    }  # fmt: skip
    op = Operator(cluster, ns, tmp_path).start()
    pg = psycopg.connect(env["PG_DSN"], autocommit=True)
    try:
        cluster.apply([pipe, table])
        wait_for(lambda: _insync(cluster, ns).get("status") == "True", 300,
                 f"backfill then verify; TR: {cluster.get('tr', 'orders', ns)}\n"
                 f"operator log:\n{op.logs()[-2000:]}")  # fmt: skip
        status = (cluster.get("tr", "orders", ns) or {})["status"]
        logs = cluster.run("logs", "-n", ns, "-l", "app.kubernetes.io/component=scan",
                           "--tail=20", "--prefix", check=False).stdout  # fmt: skip
        assert "rowsChecked" in status.get("verify", {}), f"{status}\n{logs}"
        assert status["backfill"]["result"] == "Complete"
        assert status["backfill"]["progress"] == 100
        assert status["verify"]["rowsChecked"] == ROWS
        assert status["verify"]["rowsDiffering"] == 0
        assert pg.execute(f"SELECT count(*) FROM {schema}.orders").fetchone() == (ROWS,)
        out = cluster.run("get", "tr", "-n", ns).stdout.split("\n")
        header = out[0].split()
        assert out[1].split()[header.index("IN-SYNC")] == "True"

        # Drift: a row deleted by hand. The next verify (interval shortened) reports it.
        pg.execute(f"DELETE FROM {schema}.orders WHERE p = 3 AND c = 3")
        table["spec"]["verify"]["interval"] = "1s"
        cluster.apply([table])
        wait_for(lambda: _insync(cluster, ns).get("status") == "False", 240,
                 f"the drift reported; TR: {cluster.get('tr', 'orders', ns)}")  # fmt: skip
        assert _insync(cluster, ns)["reason"] == "Differences"
        assert "1 rows differ" in _insync(cluster, ns)["message"]

        # With repair, the next run restores the row: InSync again.
        table["spec"]["verify"]["repair"] = True
        cluster.apply([table])
        wait_for(lambda: _insync(cluster, ns).get("reason") == "Repaired", 240,
                 f"the repair; TR: {cluster.get('tr', 'orders', ns)}")  # fmt: skip
        assert _insync(cluster, ns)["status"] == "True"
        row = pg.execute(f"SELECT v FROM {schema}.orders WHERE p = 3 AND c = 3").fetchone()
        assert row == ("v3",)
    finally:
        op.stop()
        pg.close()
