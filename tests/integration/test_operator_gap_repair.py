"""Verify schedules and data gaps through the real operator, worker Pod and scan Jobs (#14).

- `spec.verify.schedule` (cron, UTC): an invalid one is refused by the API server naming the
  field; a valid one records `status.verify.nextRun` and the operator starts the verify Job at
  that time (trigger `Schedule`).
- A data gap: the worker is scaled to 0 while events for 30 rows reach the table's topic, then
  Kafka deletes them (`DeleteRecords`, what retention does) before the worker comes back. The
  worker records the gap and reports it (`Ready=False, DataGap`); with `spec.verify.repair` the
  operator starts a verify-with-repair Job at once (trigger `DataGap`), whose last slice
  acknowledges the gap; the table is `InSync=True` and `Ready=True` again, and PostgreSQL holds
  exactly what Cassandra does (the lost rows included, with their write times).

The rows reach Cassandra by CQL (`USING TIMESTAMP`, an hour old so no difference counts as in
flight) and the topic in the real connector's shape (tests/support/events.py) with the same
write times: what the agent would emit, without waiting for commit-log segments to flush.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cassandra.cluster import Session
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support import cassandra as stack_cassandra
from tests.support.events import cell, envelope
from tests.support.kube import Cluster as Kube
from tests.support.kube import Operator, drop_finalizers
from tests.support.worker_proc import free_port, produce
from tests.support.worker_proc import wait_for as _wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900), pytest.mark.k8s, pytest.mark.long]
REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/cass-cdc-pg:dev"
OLD = int((time.time() - 3600) * 1_000_000)


@pytest.fixture(scope="module")
def image() -> str:
    res = subprocess.run(["make", "-s", "image"], cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"make image failed:\n{res.stdout}\n{res.stderr}", pytrace=False)
    return IMAGE


@pytest.fixture
def source(stack: Callable[..., dict[str, str]]) -> Iterator[tuple[Session, str, dict[str, str]]]:
    env = stack("cassandra", "node")
    cluster = stack_cassandra.cluster(env)
    session = cluster.connect()
    ks = f"gap_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.orders (id int PRIMARY KEY, v text)")
    yield session, ks, env
    session.execute(f"DROP KEYSPACE {ks}")
    cluster.shutdown()


@pytest.fixture
def ns(cluster: Kube, env: dict[str, str]) -> Iterator[str]:
    name = f"gap-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    cluster.run("create", "secret", "generic", "pg", "-n", name,
                "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
    cluster.apply(stack_cassandra.secret_manifest(env, name))  # the operator role's login
    yield name
    drop_finalizers(cluster.kubeconfig, name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{name}", check=False)


def wait_for(check: Callable[[], Any], timeout: float, what: str,
             describe: Callable[[], str] | None = None) -> None:  # fmt: skip
    """wait_for, with the state described when it times out (not before)."""
    try:
        _wait_for(lambda: bool(check()), timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{describe() if describe else ''}") from None


def _cond(
    cluster: Kube, ns: str, type_: str, kind: str = "tr", name: str = "orders"
) -> dict[str, Any]:
    obj = cluster.get(kind, name, ns) or {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def _verify(cluster: Kube, ns: str) -> dict[str, Any]:
    return ((cluster.get("tr", "orders", ns) or {}).get("status") or {}).get("verify") or {}


def test_an_invalid_schedule_is_refused_naming_the_field(cluster: Kube, ns: str) -> None:
    table = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"pipelineRef": {"name": "p"}, "source": {"keyspace": "ks", "table": "orders"},
                 "verify": {"schedule": "61 * * * *"}},
    }  # fmt: skip
    res = cluster.apply(table, check=False)
    assert res.returncode != 0
    assert "spec.verify.schedule" in res.stderr
    assert "must be a cron schedule of 5 fields" in res.stderr
    table["spec"]["verify"] = {"schedule": "0 5-1 * * *"}
    res = cluster.apply(table, check=False)
    assert "spec.verify.schedule" in res.stderr
    assert "start is after its end" in res.stderr
    table["spec"]["verify"] = {"schedule": "0 3 * * *", "interval": "1h"}
    res = cluster.apply(table, check=False)
    assert res.returncode != 0
    assert "spec.verify" in res.stderr
    assert "use interval or schedule, not both" in res.stderr
    table["spec"]["verify"] = {"schedule": "0 3 * * MON-FRI"}
    cluster.apply(table)


def test_schedule_then_a_data_gap_repaired_and_acknowledged_through_the_operator(
    cluster: Kube, env: dict[str, str], source: tuple[Session, str, dict[str, str]], ns: str,
    image: str, tmp_path: Path,
) -> None:  # fmt: skip
    session, ks, cass_env = source
    schema = f"s_{ks}"
    topic = f"{ns}.{ks}.orders"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    ins = session.prepare(f"INSERT INTO {ks}.orders (id, v) VALUES (?, ?) USING TIMESTAMP ?")

    def write(ids: range, to_kafka: bool = True) -> None:
        for i in ids:
            session.execute(ins, (i, f"v{i}", OLD + i))
        if to_kafka:
            produce(bootstrap, topic, [
                (json.dumps({"id": i}).encode(),
                 envelope("i", OLD + i, ks, "orders", {"id": cell(i), "v": cell(f"v{i}")}))
                for i in ids])  # fmt: skip

    pipe = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {
            "cassandra": stack_cassandra.pipeline_spec(cass_env),
            "debezium": {"topicPrefix": ns},
            "kafka": {"bootstrapServers": bootstrap, "deadLetterTopic": f"{ns}.dlq",
                      "topic": {"partitions": 1}},
            "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc",
                         "schema": schema, "sslMode": "disable",
                         "credentials": {"secretRef": {"name": "pg"}}},
            "redis": {"url": env["REDIS_URL"]},
            "worker": {"image": image, "imagePullPolicy": "Never", "replicas": 1},
        },
    }  # fmt: skip
    # Every minute: the first run is at the next minute, not at once.
    table = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"pipelineRef": {"name": "p"}, "source": {"keyspace": ks, "table": "orders"},
                 "verify": {"schedule": "* * * * *", "repair": True}},
    }  # fmt: skip
    op = Operator(cluster, ns, tmp_path).start(
        CDC_OPERATOR_ALLOWED_IMAGES="localhost/cass-cdc-pg:*",
        CDC_OPERATOR_WORKER_HTTP_PORT=str(free_port()),
    )
    pg = psycopg.connect(env["PG_DSN"], autocommit=True)

    def rows() -> list[tuple[int, str]]:
        try:
            return pg.execute(f"SELECT id, v FROM {schema}.orders ORDER BY id").fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    def cassandra_rows() -> list[tuple[int, str]]:
        return sorted((r.id, r.v) for r in session.execute(f"SELECT id, v FROM {ks}.orders"))

    def describe() -> str:
        logs = cluster.run("logs", "-n", ns, "-l", "app.kubernetes.io/name=cass-cdc-pg",
                           "--tail=30", "--prefix", "--max-log-requests=10",
                           check=False).stdout  # fmt: skip
        jobs = cluster.run("get", "jobs,pods", "-n", ns, "-o", "wide", check=False).stdout
        return (
            f"TR: {json.dumps((cluster.get('tr', 'orders', ns) or {}).get('status'))}\n"
            f"{jobs}\npods' logs:\n{logs[-4000:]}\noperator log:\n{op.logs()[-3000:]}"
        )

    try:
        cluster.apply([pipe, table])
        # The operator creates the topic (one it did not create would be left alone).
        wait_for(lambda: _cond(cluster, ns, "TopicsReady", "cdcp", "p").get("status") == "True",
                 120, "the topic created", describe)  # fmt: skip
        wait_for(lambda: _verify(cluster, ns).get("nextRun"), 120, "nextRun recorded", describe)
        first = _verify(cluster, ns)
        due = datetime.strptime(first["nextRun"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert due.second == 0, first
        # The first run is at the schedule's first minute after the table appeared, not at once.
        made = (cluster.get("tr", "orders", ns) or {})["metadata"]["creationTimestamp"]
        tr_made = datetime.strptime(made, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert tr_made < due <= tr_made + timedelta(seconds=120), (first, tr_made)
        if first.get("trigger") == "Schedule":
            # A minute boundary passed before the first look: the Job already made was due at the
            # minute before the one recorded now (stop 21's CI run read nextRun after it).
            due -= timedelta(minutes=1)
        write(range(20))
        wait_for(lambda: len(rows()) == 20, 240, "the first rows streamed", describe)
        wait_for(lambda: _verify(cluster, ns).get("trigger") == "Schedule", 120,
                 "the scheduled verify Job", describe)  # fmt: skip
        job = cluster.get("job", _verify(cluster, ns)["job"], ns) or {}
        created = datetime.strptime(job["metadata"]["creationTimestamp"],
                                    "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)  # fmt: skip
        assert created >= due, (created, due)
        wait_for(lambda: _cond(cluster, ns, "InSync").get("status") == "True", 240,
                 "the scheduled verify in sync", describe)  # fmt: skip
        assert _cond(cluster, ns, "InSync")["reason"] == "Verified"
        # From now on only the gap may start a verify.
        del table["spec"]["verify"]["schedule"]
        table["spec"]["verify"]["interval"] = "24h"
        cluster.apply([table])
        wait_for(lambda: _verify(cluster, ns).get("result") != "Running", 240,
                 "no verify running", describe)  # fmt: skip

        # The pipeline is down while 30 rows' events reach the topic and are deleted.
        pipe["spec"]["worker"]["replicas"] = 0
        cluster.apply([pipe])
        wait_for(lambda: not cluster.run("get", "pods", "-n", ns, "-l",
                                         "app.kubernetes.io/component=worker", "-o", "name",
                                         check=False).stdout.strip(),
                 120, "the worker Pod gone", describe)  # fmt: skip
        write(range(20, 50))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.delete_records([TopicPartition(topic, 0, 50)]).values():
            f.result(30)
        write(range(50, 55))
        assert len(rows()) == 20
        pipe["spec"]["worker"]["replicas"] = 1
        cluster.apply([pipe])

        seen: set[str] = set()

        def gap_shown() -> bool:
            ready = _cond(cluster, ns, "Ready")
            if ready.get("reason") == "DataGap":
                seen.add(ready["message"])
            return bool(seen) and _verify(cluster, ns).get("trigger") == "DataGap"

        wait_for(gap_shown, 180, "Ready=False DataGap and a gap repair Job", describe)
        assert any("offsets 20..49 were never applied" in m for m in seen), seen
        assert any("verify with repair" in m for m in seen), seen

        def healed() -> bool:
            gap_shown()
            return (_cond(cluster, ns, "Ready").get("status") == "True"
                    and _cond(cluster, ns, "InSync").get("status") == "True")  # fmt: skip

        wait_for(healed, 300, "the gap repaired, acknowledged, the table Ready again", describe)
        status = _verify(cluster, ns)
        assert status["trigger"] == "DataGap", status
        assert status["result"] == "Complete", status
        assert _cond(cluster, ns, "InSync")["reason"] == "Repaired"
        assert status["rowsRepaired"] == 30, status
        wait_for(lambda: len(rows()) == 55, 60, "the rows after the gap streamed", describe)
        assert rows() == cassandra_rows() == [(i, f"v{i}") for i in range(55)]
        # The repaired cells carry Cassandra's write times (the stream's later events win).
        (ts,) = pg.execute(f"SELECT _cdc_ts FROM {schema}.orders WHERE id = 30").fetchone()
        assert OLD + 30 in ts, ts
        gaps = pg.execute(f"SELECT topic, from_offset, to_offset, acknowledged_at IS NOT NULL "
                          f"FROM {schema}._cdc_gaps").fetchall()  # fmt: skip
        assert gaps == [(topic, 20, 50, True)]
        # Exactly one gap repair ran.
        jobs = [j for j in json.loads(cluster.run("get", "jobs", "-n", ns, "-o", "json").stdout)
                ["items"] if j["metadata"]["annotations"].get("casscdc.io/scan-trigger")
                == "DataGap"]  # fmt: skip
        assert len(jobs) == 1
        assert "--acknowledge-gaps" in jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    finally:
        op.stop()
        pg.close()
