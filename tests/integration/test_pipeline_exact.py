"""Exactness through the real pipeline, judged by Cassandra itself.

CQL with explicit `USING TIMESTAMP` into the stack's Cassandra → the Debezium agent (run by
cdc-agent) → Kafka → the worker → PostgreSQL, then PostgreSQL compared row by row with a
`SELECT` from Cassandra (not with a model): last-write-wins, equal timestamps with different
values (Cassandra compares the serialized bytes: 10 beats 9, -1 beats 1000, 'é' beats 'z'),
a cell tombstone and a live cell at the same timestamp, an older write arriving after a newer
one, row, partition and range deletes with late older writes, and TTL expiry.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_worker_process import _dsn_without_password
from tests.support import cassandra as stack_cassandra
from tests.support.worker_proc import WorkerProcess, create_topics, free_port, wait_for

pytestmark = pytest.mark.integration

HISTORY = [
    # Last-write-wins, regardless of arrival order.
    "INSERT INTO {t} (p, c, a, b) VALUES (1, 1, 1, 'first') USING TIMESTAMP 1000",
    "UPDATE {t} USING TIMESTAMP 3000 SET a = 3 WHERE p = 1 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 2000 SET a = 2, b = 'older' WHERE p = 1 AND c = 1",
    # Equal timestamps: the serialized value bytes, compared unsigned, decide.
    "UPDATE {t} USING TIMESTAMP 5000 SET a = 9 WHERE p = 2 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 5000 SET a = 10 WHERE p = 2 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 5000 SET a = 1000 WHERE p = 2 AND c = 2",
    "UPDATE {t} USING TIMESTAMP 5000 SET a = -1 WHERE p = 2 AND c = 2",
    "UPDATE {t} USING TIMESTAMP 5000 SET b = 'é' WHERE p = 2 AND c = 3",
    "UPDATE {t} USING TIMESTAMP 5000 SET b = 'z' WHERE p = 2 AND c = 3",
    # A tombstone beats a live cell at the same timestamp.
    "UPDATE {t} USING TIMESTAMP 6000 SET a = 5, b = 'kept' WHERE p = 2 AND c = 4",
    "DELETE a FROM {t} USING TIMESTAMP 6000 WHERE p = 2 AND c = 4",
    # Row delete; a later-arriving older write must not resurrect the row.
    "INSERT INTO {t} (p, c, a) VALUES (3, 1, 1) USING TIMESTAMP 7000",
    "DELETE FROM {t} USING TIMESTAMP 8000 WHERE p = 3 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 7500 SET b = 'too late' WHERE p = 3 AND c = 1",
    # Partition delete, then a newer write in the same partition survives.
    "INSERT INTO {t} (p, c, a) VALUES (4, 1, 1) USING TIMESTAMP 9000",
    "INSERT INTO {t} (p, c, a) VALUES (4, 2, 2) USING TIMESTAMP 9000",
    "DELETE FROM {t} USING TIMESTAMP 9500 WHERE p = 4",
    "INSERT INTO {t} (p, c, a) VALUES (4, 3, 3) USING TIMESTAMP 9600",
    "INSERT INTO {t} (p, c, a) VALUES (4, 4, 4) USING TIMESTAMP 9400",
    # Range delete: only rows in the range, only writes at or before it.
    "INSERT INTO {t} (p, c, a) VALUES (5, 1, 1) USING TIMESTAMP 10000",
    "INSERT INTO {t} (p, c, a) VALUES (5, 2, 2) USING TIMESTAMP 10000",
    "INSERT INTO {t} (p, c, a) VALUES (5, 3, 3) USING TIMESTAMP 10000",
    "INSERT INTO {t} (p, c, a) VALUES (5, 4, 4) USING TIMESTAMP 10000",
    "DELETE FROM {t} USING TIMESTAMP 11000 WHERE p = 5 AND c >= 2 AND c < 4",
    "UPDATE {t} USING TIMESTAMP 12000 SET b = 'after the range' WHERE p = 5 AND c = 3",
    # A partial update never nulls what it did not carry.
    "INSERT INTO {t} (p, c, a, b) VALUES (6, 1, 1, 'b stays') USING TIMESTAMP 13000",
    "UPDATE {t} USING TIMESTAMP 14000 SET a = 2 WHERE p = 6 AND c = 1",
]
# TTL: live now, gone after expiry (and a TTL row's sibling stays).
TTL = [
    "INSERT INTO {t} (p, c, a, b) VALUES (7, 1, 1, 'expires') USING TTL 20",
    "INSERT INTO {t} (p, c, a, b) VALUES (7, 2, 2, 'stays')",
]


def _agent(env: dict[str, str]) -> dict[str, Any]:
    url = f"{env['CDC_AGENT_URL']}/status"
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the stack's agent
        return json.loads(r.read())  # type: ignore[no-any-return]


def _prefix(env: dict[str, str]) -> str:
    for line in Path(env["DEBEZIUM_CONFIG"]).read_text().splitlines():
        if line.startswith("topic.prefix="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no topic.prefix in the agent's config")


def test_postgres_equals_what_cassandra_selects(
    stack: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = stack("postgres", "kafka", "cassandra", "debezium")
    cluster = stack_cassandra.cluster(env, protocol_version=5)
    session = cluster.connect()
    ks = f"exact_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.t (p int, c int, a int, b text, PRIMARY KEY (p, c)) "
                    "WITH cdc = true")  # fmt: skip

    # cdc-agent restarts the agent for the new cdc = true table; wait until it captures it.
    def captured() -> bool:
        st = _agent(env)
        return f"{ks}.t" in st.get("agent_tables", []) and st.get("phase") == "ready"

    wait_for(captured, 120, "the agent to capture the table")
    topic = f"{_prefix(env)}.{ks}.t"
    name = f"x{uuid.uuid4().hex[:8]}"
    create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], f"{name}.dlq", partitions=1)
    with contextlib.suppress(Exception):  # the agent may have created it already
        create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], topic, partitions=1)
    dsn = env["PG_DSN"]
    cfg = {
        "pipeline": name,
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"], "groupId": f"g-{name}",
                  "deadLetterTopic": f"{name}.dlq"},
        "postgres": {"dsn": _dsn_without_password(dsn), "schema": name},
        "cassandra": stack_cassandra.worker_config(env),
        "tables": [{"topic": topic, "source": {"keyspace": ks, "table": "t"},
                    "target": {"table": "t"}}],
        "batch": {"maxEvents": 500, "maxWaitMs": 200},
        "httpPort": free_port(),
        "ttlSweepIntervalSeconds": 0.5,
    }  # fmt: skip
    try:
        for stmt in HISTORY:
            session.execute(stmt.format(t=f"{ks}.t"))
        w = WorkerProcess(
            tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc", **stack_cassandra.worker_env(env)}
        ).start()
        pg = psycopg.connect(dsn, autocommit=True)
        try:

            def cassandra() -> list[tuple[Any, ...]]:
                rows = session.execute(f"SELECT p, c, a, b FROM {ks}.t")
                return sorted((r.p, r.c, r.a, r.b) for r in rows)

            def postgres() -> list[tuple[Any, ...]]:
                try:
                    return sorted(pg.execute(f"SELECT p, c, a, b FROM {name}.t").fetchall())
                except psycopg.errors.UndefinedTable:
                    return []

            seen: list[Any] = [None]

            def equal() -> bool:
                seen[0] = (cassandra(), postgres())
                return bool(seen[0][0] == seen[0][1])

            wait_for(equal, 120, f"PostgreSQL to equal Cassandra: {seen}; worker log:\n"
                     f"{w.logs()[-2000:]}")  # fmt: skip
            rows = {(p, c): (a, b) for p, c, a, b in cassandra()}
            # What Cassandra answers is what the rules above say (a check on the history).
            assert rows[(2, 1)][0] == 10
            assert rows[(2, 2)][0] == -1
            assert rows[(2, 3)][1] == "é"
            assert rows[(2, 4)] == (None, "kept")
            assert (3, 1) not in rows
            # TTL: live while it lives, then it leaves Cassandra's answer and PostgreSQL's.
            for stmt in TTL:
                session.execute(stmt.format(t=f"{ks}.t"))
            wait_for(lambda: (7, 1, 1, "expires") in postgres(), 60, "the TTL row applied")
            wait_for(lambda: (7, 1) not in {(r[0], r[1]) for r in cassandra()}, 90, "expiry")
            wait_for(equal, 30, f"PostgreSQL to drop the expired row: {seen}")
            assert not pg.execute(f"SELECT 1 FROM {name}.t WHERE p = 7 AND c = 1").fetchall()
        finally:
            w.stop()
            pg.close()
    finally:
        session.execute(f"DROP KEYSPACE {ks}")
        cluster.shutdown()
