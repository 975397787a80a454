"""Exactness through the real pipeline, judged by Cassandra itself.

CQL with explicit `USING TIMESTAMP` into the stack's Cassandra → the Debezium agent (run by
cdc-agent) → Kafka → the worker → PostgreSQL, then PostgreSQL compared row by row with a
`SELECT` from Cassandra (not with a model): last-write-wins, equal timestamps with different
values (Cassandra compares the serialized bytes: 10 beats 9, -1 beats 1000, 'é' beats 'z'),
a cell tombstone and a live cell at the same timestamp, an older write arriving after a newer
one, row, partition and range deletes with late older writes, and TTL expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.support import cassandra as stack_cassandra
from tests.support.captured import Sides, capture
from tests.support.worker_proc import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.long]

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


def test_postgres_equals_what_cassandra_selects(
    stack: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = stack("postgres", "kafka", "cassandra", "debezium")
    cluster = stack_cassandra.cluster(env, protocol_version=5)
    session = cluster.connect()
    cap = capture(env, session, "exact", "p int, c int, a int, b text, PRIMARY KEY (p, c)")
    ks, name, dsn = cap.keyspace, cap.name, env["PG_DSN"]
    cfg = {**cap.worker_config(env), "ttlSweepIntervalSeconds": 0.5}
    try:
        for stmt in HISTORY:
            session.execute(stmt.format(t=f"{ks}.t"))
        w = WorkerProcess(
            tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc", **stack_cassandra.worker_env(env)}
        ).start()
        pg = psycopg.connect(dsn, autocommit=True)
        try:
            sides = Sides(session, pg, cap, "p, c, a, b")
            sides.wait_equal(120, "PostgreSQL to equal Cassandra", w.logs)
            rows = {(p, c): (a, b) for p, c, a, b in sides.cassandra()}
            # What Cassandra answers is what the rules above say (a check on the history).
            assert rows[(2, 1)][0] == 10
            assert rows[(2, 2)][0] == -1
            assert rows[(2, 3)][1] == "é"
            assert rows[(2, 4)] == (None, "kept")
            assert (3, 1) not in rows
            # TTL: live while it lives, then it leaves Cassandra's answer and PostgreSQL's.
            for stmt in TTL:
                session.execute(stmt.format(t=f"{ks}.t"))
            wait_for(lambda: (7, 1, 1, "expires") in sides.postgres(), 60, "the TTL row applied")
            wait_for(lambda: (7, 1) not in {r[:2] for r in sides.cassandra()}, 90, "expiry")
            sides.wait_equal(30, "PostgreSQL to drop the expired row")
            assert not pg.execute(f"SELECT 1 FROM {name}.t WHERE p = 7 AND c = 1").fetchall()
        finally:
            w.stop()
            pg.close()
    finally:
        session.execute(f"DROP KEYSPACE {ks}")
        cluster.shutdown()
