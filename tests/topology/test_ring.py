"""The production topology for real: RF=3 on a 3-node ring, an agent per node, 3 brokers.

What the single-node suite can only synthesise is observed here: every replica's agent emits its
own copy of a write (the topic holds more events than writes), the copies land on an RF 3 /
min.insync.replicas 2 topic, and one worker turns them into exactly what Cassandra returns, row
by row, also when a broker and then a Cassandra node are SIGKILLed in the middle of the stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy
from cassandra.query import SimpleStatement
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.integration.test_worker_process import pt_table, worker_config
from tests.support import cassandra as stack_cassandra
from tests.support.worker_proc import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.topology]
REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("CDC_STACK_STATE", REPO / ".stack"))
QUORUM, ONE = ConsistencyLevel.LOCAL_QUORUM, ConsistencyLevel.ONE


@pytest.fixture(scope="module")
def env(stack: Any) -> dict[str, str]:
    return stack("postgres", "redis", "kafka", "cassandra", "debezium")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def session(env: dict[str, str]) -> Iterator[Session]:
    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(env["CASSANDRA_LOCAL_DATACENTER"]),
        consistency_level=QUORUM,
        request_timeout=30,
    )
    cluster = stack_cassandra.cluster(env, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    yield cluster.connect()
    cluster.shutdown()


def _agents(env: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for url in env["CDC_AGENT_URLS"].split(","):
        try:
            with urllib.request.urlopen(f"{url}/status", timeout=3) as r:  # noqa: S310 - http
                out.append(json.loads(r.read()))
        except OSError:
            out.append({})
    return out


def _table(session: Session, env: dict[str, str]) -> tuple[str, str]:
    """An RF=3 keyspace with a cdc table, once every node's agent captures it: (ks, topic)."""
    ks = f"ring_{uuid.uuid4().hex[:8]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 3}")  # fmt: skip
    topic = f"{env['DEBEZIUM_TOPIC_PREFIX']}.{ks}.t"
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    new = NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})
    admin.create_topics([new])[topic].result(30)
    session.execute(f"CREATE TABLE {ks}.t (p int, c int, a int, b text, PRIMARY KEY (p, c)) "
                    "WITH cdc = true")  # fmt: skip
    table = f"{ks}.t"

    def capturing() -> bool:
        agents = _agents(env)
        return all(table in a.get("agent_tables", ()) and a.get("phase") == "ready" for a in agents)

    wait_for(capturing, 120, f"every node's agent capturing {table}")
    return ks, topic


def _topic_events(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:6]}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def _write(session: Session, ks: str, n: int, start: int, cl: int) -> int:
    """n writes at consistency cl: inserts, partial updates of b, some deletes. Returns n."""
    ins = session.prepare(f"INSERT INTO {ks}.t (p, c, a, b) VALUES (?, ?, ?, ?)")
    upd = session.prepare(f"UPDATE {ks}.t SET b = ? WHERE p = ? AND c = ?")
    dele = session.prepare(f"DELETE FROM {ks}.t WHERE p = ? AND c = ?")
    for stmt in (ins, upd, dele):
        stmt.consistency_level = cl
    for i in range(start, start + n):
        p, c = i % 37, i % 5
        if i % 11 == 0:
            session.execute(dele, (p, c))
        elif i % 3 == 0:
            session.execute(upd, (f"u{i}", p, c))
        else:
            session.execute(ins, (p, c, i, f"v{i}"))
    return n


def _rows_cassandra(session: Session, ks: str) -> list[tuple[Any, ...]]:
    stmt = SimpleStatement(f"SELECT p, c, a, b FROM {ks}.t", consistency_level=ConsistencyLevel.ALL)
    return sorted(tuple(r) for r in session.execute(stmt))


def _rows_pg(env: dict[str, str], schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
        try:
            return sorted(pg.execute(f"SELECT p, c, a, b FROM {schema}.t").fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def _worker(env: dict[str, str], tmp: Path, ks: str, topic: str) -> tuple[WorkerProcess, str]:
    name = f"r{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    admin.create_topics([NewTopic(f"{name}.dlq", 1, 3)])[f"{name}.dlq"].result(30)
    table = pt_table(topic)
    table["source"] = {"keyspace": ks, "table": "t"}
    points = env["CASSANDRA_CONTACT_POINTS"].split(",")
    cfg = worker_config(env, name, [table], cassandra={"contactPoints": points})
    w = WorkerProcess(tmp, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()
    return w, name


def _converge(
    env: dict[str, str], session: Session, ks: str, schema: str, w: WorkerProcess
) -> None:
    want = _rows_cassandra(session, ks)
    assert want, "Cassandra holds no rows"
    what = f"PostgreSQL == Cassandra ({len(want)} rows)"
    wait_for(lambda: _rows_pg(env, schema) == want, 120, f"{what}; worker log:\n{w.logs()[-3000:]}")


def test_ring_and_brokers_are_the_production_topology(env: dict[str, str]) -> None:
    assert env["CASSANDRA_NODES"] == "3"
    assert len(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    assert len(admin.list_topics(timeout=10).brokers) == 3
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    conf = admin.describe_configs([res])[res].result(30)
    assert conf["default.replication.factor"].value == "3"
    assert conf["min.insync.replicas"].value == "2"


def test_replica_copies_from_every_agent_reach_postgres(
    env: dict[str, str], session: Session, tmp_path: Path
) -> None:
    ks, topic = _table(session, env)
    peers = session.execute("SELECT peer FROM system.peers").all()
    assert len(peers) == 2
    meta = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]}).list_topics(topic)
    assert all(len(p.replicas) == 3 for p in meta.topics[topic].partitions.values())
    writes = _write(session, ks, 150, 0, QUORUM) + _write(session, ks, 150, 150, ONE)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    # Every replica's agent emits its own copy: three per write once all agents caught up.
    wait_for(lambda: _topic_events(bootstrap, topic) >= 3 * writes, 120, "3 copies per write")
    assert _topic_events(bootstrap, topic) > writes
    w, schema = _worker(env, tmp_path, ks, topic)
    try:
        _converge(env, session, ks, schema, w)
    finally:
        w.stop()


def _pid(component_dir: str) -> int:
    return int(
        (STATE / component_dir / f"{component_dir.split('-')[0]}.pid").read_text().split()[0]
    )


def _stack_up(*components: str) -> None:
    subprocess.run([str(REPO / "hack/stack"), "up", *components], check=True)


def test_broker_and_node_sigkilled_mid_stream_lose_nothing(
    env: dict[str, str], session: Session, tmp_path: Path
) -> None:
    ks, topic = _table(session, env)
    w, schema = _worker(env, tmp_path, ks, topic)
    try:
        _write(session, ks, 100, 0, QUORUM)
        os.kill(_pid("kafka-2"), signal.SIGKILL)  # a broker dies under acks=all producers
        _write(session, ks, 100, 100, QUORUM)
        _write(session, ks, 50, 200, ONE)
        _stack_up("kafka")
        _converge(env, session, ks, schema, w)
        os.kill(_pid("cassandra-3"), signal.SIGKILL)  # a replica dies: QUORUM still succeeds
        time.sleep(2)
        _write(session, ks, 100, 250, QUORUM)
        _stack_up("cassandra")
        _write(session, ks, 100, 350, QUORUM)
        _converge(env, session, ks, schema, w)
    finally:
        w.stop()
