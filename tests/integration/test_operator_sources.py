"""One bad table only affects itself; each table says how exactly it can be replicated.

The operator reads the source schema from the stack's Cassandra (with `manageTableCdc`):
a missing table and a table the connector cannot capture (a non-frozen UDT column) stay out
of the worker and connector configs with their own `Ready=False`, and never get `cdc = true`;
a table with a set and a static column replicates with `Exact=False` naming them; the
pipeline itself stays Ready.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cassandra.cluster import Session

from tests.support import cassandra as stack_cassandra
from tests.support.kube import Cluster as Kube
from tests.support.kube import Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s]


@pytest.fixture
def cql(stack: Callable[..., dict[str, str]]) -> Iterator[tuple[Session, str]]:
    env = stack("cassandra")
    cluster = stack_cassandra.cluster(env)
    session = cluster.connect()
    ks = f"src_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.good (id int PRIMARY KEY, v text)")
    session.execute(f"CREATE TABLE {ks}.loose (p int, c int, s int STATIC, tags set<text>, "
                    "v text, PRIMARY KEY (p, c))")  # fmt: skip
    session.execute(f"CREATE TYPE {ks}.addr (street text)")
    session.execute(f"CREATE TABLE {ks}.udt (id int PRIMARY KEY, home addr)")
    yield session, ks
    session.execute(f"DROP KEYSPACE {ks}")
    cluster.shutdown()


@pytest.fixture
def ns(cluster: Kube, env: dict[str, str]) -> Iterator[str]:
    name = f"src-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    cluster.run("create", "secret", "generic", "pg", "-n", name,
                "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
    cluster.apply(stack_cassandra.secret_manifest(env, name))  # the operator role's login
    yield name
    drop_finalizers(cluster.kubeconfig, name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}", check=False)


def _conds(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def test_bad_tables_only_affect_themselves(
    cluster: Kube, env: dict[str, str], cql: tuple[Session, str], ns: str, tmp_path: Path,
) -> None:  # fmt: skip
    session, ks = cql
    pipe = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {
            "cassandra": stack_cassandra.pipeline_spec(env, manageTableCdc=True),
            # The stack's cdc-agent beside the node (hack/stack env: CDC_AGENT_URL).
            "debezium": {"topicPrefix": ns,
                         "agentStatusPort": int(env["CDC_AGENT_URL"].rsplit(":", 1)[1])},
            "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                      "deadLetterTopic": f"{ns}.dlq", "topic": {"partitions": 1}},
            "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc",
                         "credentials": {"secretRef": {"name": "pg"}}},
            "worker": {"image": "localhost/cass-cdc-pg:dev", "replicas": 0},
        },
    }  # fmt: skip
    tables = [
        {"apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
         "metadata": {"name": t, "namespace": ns},
         "spec": {"pipelineRef": {"name": "p"}, "source": {"keyspace": ks, "table": t}}}
        for t in ("good", "loose", "udt", "missing")
    ]  # fmt: skip
    op = Operator(cluster, ns, tmp_path).start()
    try:
        cluster.apply([pipe, *tables])

        def settled() -> bool:
            ready = {t: _conds(cluster.get("tr", t, ns)).get("Ready", {}).get("status")
                     for t in ("good", "loose", "udt", "missing")}  # fmt: skip
            return ready == {"good": "True", "loose": "True", "udt": "False", "missing": "False"}

        wait_for(settled, 90, f"table statuses; operator log:\n{op.logs()[-3000:]}")
        assert _conds(cluster.get("cdcp", "p", ns))["Ready"]["status"] == "True"
        good, loose = _conds(cluster.get("tr", "good", ns)), _conds(cluster.get("tr", "loose", ns))
        assert good["Exact"]["status"] == "True"
        assert loose["Exact"]["status"] == "False"
        assert loose["Exact"]["reason"] == "NonFrozenCollection"
        assert "NonFrozenCollection: tags" in loose["Exact"]["message"]
        assert "StaticColumn: s" in loose["Exact"]["message"]
        udt = _conds(cluster.get("tr", "udt", ns))["Ready"]
        assert udt["reason"] == "UnsupportedColumns"
        assert "home" in udt["message"]
        assert _conds(cluster.get("tr", "missing", ns))["Ready"]["reason"] == "SourceTableNotFound"
        rows = session.execute(
            "SELECT table_name, cdc FROM system_schema.tables WHERE keyspace_name = %s", (ks,)
        )
        cdc = {r.table_name: r.cdc for r in rows}
        assert cdc == {"good": True, "loose": True, "udt": False}
        cm = cluster.get("configmap", "p-worker", ns) or {"data": {"worker.yaml": ""}}
        topics = sorted(t["topic"] for t in yaml.safe_load(cm["data"]["worker.yaml"])["tables"])
        assert topics == [f"{ns}.{ks}.good", f"{ns}.{ks}.loose"]
        # The agent beside the node is read: ready, and (after its restart for the new
        # cdc = true tables) capturing them.
        wait_for(lambda: _conds(cluster.get("cdcp", "p", ns)).get("AgentsReady", {})
                 .get("status") == "True", 90, "AgentsReady")  # fmt: skip
        assert (cluster.get("cdcp", "p", ns) or {})["status"]["agents"] == "1/1"
        sidecar = yaml.safe_load((cluster.get("configmap", "p-debezium", ns) or {})["data"]
                                 ["sidecar.yaml"])  # fmt: skip
        assert [c["name"] for c in sidecar["spec"]["containers"]] == ["cdc-agent"]
    finally:
        op.stop()
