"""`reread`: non-frozen collections taken from Cassandra, judged by Cassandra itself.

The connector emits a non-frozen collection as a delta, and an element removal or an
overwrite looks like an append (docs/debezium-wire-format.md), so no merge of the stream can
be exact. With `reread` the worker re-reads those columns for every row an event touches. CQL
into the stack's Cassandra → the agent → Kafka → the worker (running while the history is
written) → PostgreSQL, compared with a `SELECT` from Cassandra: removals, overwrites, map
entry deletes, a row that lives only through a collection and vanishes with its last element,
a row delete newer than the elements and a newer append after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import cassandra as stack_cassandra
from tests.support.captured import Sides, capture
from tests.support.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

FIRST = [
    "INSERT INTO {t} (p, c, v, s, l, m) VALUES (1, 1, 1, {{'a', 'b'}}, [1, 2], {{'x': 1}}) "
    "USING TIMESTAMP 1000",
    "UPDATE {t} USING TIMESTAMP 5000 SET s = {{'z'}} WHERE p = 1 AND c = 2",
    "UPDATE {t} USING TIMESTAMP 7000 SET s = s + {{'only'}} WHERE p = 2 AND c = 1",
    "INSERT INTO {t} (p, c, v, s) VALUES (3, 1, 3, {{'q'}}) USING TIMESTAMP 9000",
    "UPDATE {t} USING TIMESTAMP 9000 SET s = s + {{'kept'}} WHERE p = 4 AND c = 1",
]
SECOND = [
    # An element removal arrives as {'a'}: the stream alone would store {'a'}.
    "UPDATE {t} USING TIMESTAMP 2000 SET s = s - {{'a'}} WHERE p = 1 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 3000 SET s = s + {{'c'}}, l = l + [3] WHERE p = 1 AND c = 1",
    "DELETE m['x'] FROM {t} USING TIMESTAMP 4000 WHERE p = 1 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 4000 SET m['y'] = 2 WHERE p = 1 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 10000 SET l = l - [1] WHERE p = 1 AND c = 1",
    # An overwrite arrives like an append.
    "UPDATE {t} USING TIMESTAMP 6000 SET s = {{'w'}} WHERE p = 1 AND c = 2",
    # A row that exists only through its set disappears with its last element.
    "UPDATE {t} USING TIMESTAMP 8000 SET s = s - {{'only'}} WHERE p = 2 AND c = 1",
    # A row delete newer than the elements, then a newer append.
    "DELETE FROM {t} USING TIMESTAMP 9500 WHERE p = 3 AND c = 1",
    "UPDATE {t} USING TIMESTAMP 9600 SET s = s + {{'r'}} WHERE p = 3 AND c = 1",
    # An older row delete than the element: the element stays.
    "DELETE FROM {t} USING TIMESTAMP 8500 WHERE p = 4 AND c = 1",
]


def test_collections_equal_what_cassandra_selects(
    stack: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = stack("postgres", "kafka", "cassandra", "debezium")
    cluster = stack_cassandra.cluster(env, protocol_version=5)
    session = cluster.connect()
    cap = capture(env, session, "reread", "p int, c int, v int, s set<text>, l list<int>, "
                  "m map<text, int>, PRIMARY KEY (p, c)")  # fmt: skip
    ks, dsn = cap.keyspace, env["PG_DSN"]
    cfg = cap.worker_config(env, reread={"consistency": "ONE"})
    w = WorkerProcess(
        tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc", **stack_cassandra.worker_env(env)}
    ).start()
    pg = psycopg.connect(dsn, autocommit=True)
    try:

        def cass_row(r: tuple[Any, ...]) -> tuple[Any, ...]:
            p, c, v, st, li, m = r
            return (p, c, v, sorted(st) if st else None, list(li) if li else None,
                    dict(m) if m else None)  # fmt: skip

        def pg_row(r: tuple[Any, ...]) -> tuple[Any, ...]:
            p, c, v, st, li, m = r
            return (p, c, v, sorted(st) if st else None, li or None, m or None)

        sides = Sides(session, pg, cap, "p, c, v, s, l, m", cass_row, pg_row)

        for part in (FIRST, SECOND):
            for stmt in part:
                session.execute(stmt.format(t=f"{ks}.t"))
            sides.wait_equal(90, "PostgreSQL to equal Cassandra", w.logs)
        rows = {(r[0], r[1]): r[2:] for r in sides.cassandra()}
        # What Cassandra answers is what the history says (a check on the test itself).
        assert rows[(1, 1)] == (1, ["b", "c"], [2, 3], {"y": 2})
        assert rows[(1, 2)] == (None, ["w"], None, None)
        assert (2, 1) not in rows
        assert rows[(3, 1)] == (None, ["r"], None, None)
        assert rows[(4, 1)] == (None, ["kept"], None, None)
        assert "dead_letter" not in w.logs()
    finally:
        w.stop()
        pg.close()
        session.execute(f"DROP KEYSPACE {ks}")
        cluster.shutdown()
