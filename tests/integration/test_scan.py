"""Verify, repair and backfill against the stack's real Cassandra and PostgreSQL.

A table with a static column, collections, TTL cells and a frozen list is
written in Cassandra with explicit (old) write times, backfilled, and then
drifted on purpose in both databases. Verify must report exactly the drifted
rows (no more, no fewer), hold back a row still in flight, and repair must make
the two equal through the worker's merge.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from cassandra.cluster import Session

from cdc_worker.config import load_config
from cdc_worker.scan.run import ScanOptions, ScanResult, run_scan
from cdc_worker.scan.values import murmur3_token, routing_key, serialize_pg
from cdc_worker.typemap import parse_cql_type
from tests.conftest import _stack_env
from tests.support import cassandra as stack_cassandra

pytestmark = pytest.mark.integration

SUFFIX = uuid.uuid4().hex[:8]
KS = f"scanit_{SUFFIX}"
PGS = f"scanit_{SUFFIX}"
OLD = int(time.time() * 1e6) - 600 * 10**6  # well outside the in-flight lag


@pytest.fixture(scope="module")
def env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("cassandra", "postgres")


@pytest.fixture(scope="module")
def session(env: dict[str, str]) -> Iterator[Session]:
    cluster = stack_cassandra.cluster(env)
    s = cluster.connect()
    s.execute(
        f"CREATE KEYSPACE {KS} WITH replication = {{'class': 'SimpleStrategy', "
        "'replication_factor': 1}"
    )
    s.execute(
        f"CREATE TABLE {KS}.items (p int, c int, s int static, v text, n bigint, d double, "
        "ts timestamp, tags set<text>, m map<text, int>, fl frozen<list<int>>, "
        "PRIMARY KEY (p, c))"
    )
    yield s
    s.execute(f"DROP KEYSPACE IF EXISTS {KS}")
    cluster.shutdown()


@pytest.fixture(scope="module")
def pg(env: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(env["PG_DSN"], autocommit=True)
    yield conn
    conn.execute(f"DROP SCHEMA IF EXISTS {PGS} CASCADE")
    conn.close()


@pytest.fixture(scope="module")
def config(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dsn = env["PG_DSN"].replace("cdc:cdc@", "cdc@")
    doc = {
        "pipeline": "scanit",
        "kafka": {"bootstrapServers": "127.0.0.1:1", "groupId": "g", "deadLetterTopic": "dlq"},
        "postgres": {"dsn": dsn, "schema": PGS, "sslMode": "disable"},
        "cassandra": stack_cassandra.worker_config(env),
        "tables": [{"topic": f"casscdc.{KS}.items", "source": {"keyspace": KS, "table": "items"}}],
    }
    path = tmp_path_factory.mktemp("scan") / "worker.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def scan(config: Path, kind: str, **kw: Any) -> ScanResult:
    cfg = load_config(config, {})
    opts = ScanOptions(kind, subranges=kw.pop("subranges", 64), resume=False, **kw)
    login = stack_cassandra.worker_env(_stack_env())
    with pytest.MonkeyPatch.context() as mp:  # the schema lookup reads the process environment
        for key, value in login.items():
            mp.setenv(key, value)
        return run_scan(cfg, opts, {"POSTGRES_PASSWORD": "cdc", **login})


def keys(res: ScanResult) -> set[str]:
    return {d["key"] for d in res.differences}


def k(p: int, c: int) -> str:
    return f"{len(str(p))}:{p}{len(str(c))}:{c}"


def test_backfill_verify_drift_repair(
    session: Session, pg: psycopg.Connection[Any], config: Path
) -> None:
    ins = session.prepare(
        f"INSERT INTO {KS}.items (p, c, v, n, d, ts, tags, m, fl) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "USING TIMESTAMP ? AND TTL ?"
    )
    stat = session.prepare(f"UPDATE {KS}.items USING TIMESTAMP ? SET s = ? WHERE p = ?")
    t_insert = time.time()
    for p in range(30):
        session.execute(stat, (OLD, p * 10, p))
        for c in range(10):
            ttl = 3600 if c == 9 else 0  # live TTL cells written before the pipeline existed
            session.execute(ins, (
                p, c, f"v{p}-{c}\ttab", p * 1000 + c, c / 3, datetime(2024, 1, 1, c, tzinfo=UTC),
                {"a", "b", f"x{c}"}, {"k": c, "j": p}, [c, p], OLD + c, ttl,
            ))  # fmt: skip
    # Backfill into an empty PostgreSQL table (created from the Cassandra schema).
    res = scan(config, "backfill")
    assert (res.rowsChecked, res.rowsRepaired, res.progress) == (300, 300, 1.0)
    row = pg.execute(
        f"SELECT v, s, tags, _cdc_ts, _cdc_exp, _cdc_token FROM {PGS}.items WHERE p = 7 AND c = 9"
    ).fetchone()
    assert row is not None
    assert row[0] == "v7-9\ttab"
    assert row[1] == 70
    assert sorted(row[2]) == ["a", "b", "x9"]
    assert OLD + 9 in row[3]
    assert OLD in row[3]
    exps = [e for e in row[4] if e is not None]
    assert exps
    assert all(abs(e / 1e6 - (t_insert + 3600)) < 5 for e in exps)
    tok = session.execute(f"SELECT token(p) FROM {KS}.items WHERE p = 7 LIMIT 1").one()[0]
    assert row[5] == tok
    # In sync: nothing differs.
    res = scan(config, "verify")
    assert (res.rowsChecked, res.rowsDiffering, res.rowsInFlight) == (300, 0, 0), res.differences

    # Tokens recomputed by the scanner from PostgreSQL values equal Cassandra's.
    pg.execute(f"UPDATE {PGS}.items SET _cdc_token = NULL")
    res = scan(config, "verify")
    assert res.rowsDiffering == 0
    bad = pg.execute(f"SELECT count(*) FROM {PGS}.items WHERE _cdc_token IS NULL").fetchone()
    assert bad == (0,)

    # Drift, one case each.
    pg.execute(f"UPDATE {PGS}.items SET v = 'by hand' WHERE p = 1 AND c = 1")
    pg.execute(f"DELETE FROM {PGS}.items WHERE p = 2 AND c = 2")
    session.execute(
        f"INSERT INTO {KS}.items (p, c, v) VALUES (100, 0, 'unseen') USING TIMESTAMP {OLD}"
    )
    session.execute(f"DELETE FROM {KS}.items USING TIMESTAMP {OLD + 100} WHERE p = 3 AND c = 3")
    session.execute(
        f"UPDATE {KS}.items USING TIMESTAMP {OLD + 100} SET tags = tags - {{'a'}} "
        "WHERE p = 4 AND c = 4"
    )
    session.execute(
        f"UPDATE {KS}.items USING TIMESTAMP {OLD + 100} SET m = {{'z': 1}} WHERE p = 5 AND c = 5"
    )
    session.execute(f"UPDATE {KS}.items USING TIMESTAMP {OLD + 100} SET s = 99 WHERE p = 6")
    session.execute(f"INSERT INTO {KS}.items (p, c, v) VALUES (101, 0, 'in flight')")
    expected = {k(1, 1), k(2, 2), k(100, 0), k(4, 4), k(5, 5)}
    expected |= {k(6, c) for c in range(10)}

    # The row deleted in Cassandra (3, 3) is held back like the new row (101, 0): a SELECT
    # shows no tombstone's time, so the deletion might still be on its way.
    res = scan(config, "verify", lag_seconds=300, recheck_wait_seconds=0)
    assert keys(res) == expected
    assert (res.rowsDiffering, res.rowsInFlight, res.rowsRepaired) == (15, 2, 0)
    kinds = {d["key"]: d["kind"] for d in res.differences}
    assert kinds[k(100, 0)] == "missing_in_postgres"
    assert kinds[k(2, 2)] == "missing_in_postgres"
    assert kinds[k(1, 1)] == "differs"
    assert {d["key"]: d["columns"] for d in res.differences}[k(4, 4)] == ["tags"]

    res = scan(config, "repair", lag_seconds=300, recheck_wait_seconds=0)
    assert (res.rowsDiffering, res.rowsRepaired) == (15, 15)
    res = scan(config, "verify", lag_seconds=300, recheck_wait_seconds=0)
    assert (res.rowsDiffering, res.rowsInFlight) == (0, 2), res.differences
    got = dict(pg.execute(f"SELECT c, s FROM {PGS}.items WHERE p = 6").fetchall())
    assert set(got.values()) == {99}
    assert pg.execute(f"SELECT v FROM {PGS}.items WHERE p = 1 AND c = 1").fetchone() == (
        "v1-1\ttab",
    )
    tags = pg.execute(f"SELECT tags FROM {PGS}.items WHERE p = 4 AND c = 4").fetchone()
    assert tags is not None
    assert sorted(tags[0]) == ["b", "x4"]

    # Once they are older than the lag (0 here) they count, and repair fixes them.
    res = scan(config, "repair", lag_seconds=0)
    assert (res.rowsDiffering, res.rowsInFlight, res.rowsRepaired) == (2, 0, 2)
    assert keys(res) == {k(101, 0), k(3, 3)}
    assert {d["key"]: d["kind"] for d in res.differences}[k(3, 3)] == "absent_in_cassandra"
    assert pg.execute(f"SELECT count(*) FROM {PGS}.items WHERE p = 3 AND c = 3").fetchone() == (0,)


def test_cli_json_and_slices(session: Session, pg: psycopg.Connection[Any], config: Path) -> None:
    """`cdc-worker verify --slice i/n` over all n slices checks every row once."""
    total = 0
    for i in range(3):
        out = subprocess.run(
            [sys.executable, "-m", "cdc_worker", "verify", "--config", str(config),
             "--slice", f"{i}/3", "--subranges", "32", "--lag-seconds", "0"],
            capture_output=True, text=True, env={"POSTGRES_PASSWORD": "cdc", "PATH": "/usr/bin",
                                                 **stack_cassandra.worker_env(_stack_env())},
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        line = json.loads(out.stdout.strip().splitlines()[-1])
        assert line["slice"] == f"{i}/3"
        assert line["progress"] == 1.0
        assert line["rowsDiffering"] == 0
        assert {"rowsChecked", "rowsRepaired", "duration"} <= set(line)
        total += line["rowsChecked"]
    expected = session.execute(f"SELECT count(*) FROM {KS}.items").one()[0]
    assert total == expected
    ck = pg.execute(
        f"SELECT count(*) FROM {PGS}._cdc_scan_checkpoints WHERE kind = 'verify' AND "
        "slice_count = 3 AND done"
    ).fetchone()
    assert ck == (3,)


def test_token_of_composite_partition_keys(session: Session) -> None:
    session.execute(
        f"CREATE TABLE {KS}.comp (a text, b uuid, d date, t timestamp, x int, "
        "PRIMARY KEY ((a, b, d, t), x))"
    )
    u = uuid.uuid4()
    t = datetime(2023, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    session.execute(
        f"INSERT INTO {KS}.comp (a, b, d, t, x) VALUES (%s, %s, %s, %s, 1)",
        ("é key", u, date(2020, 2, 29), t),
    )
    want = session.execute(f"SELECT token(a, b, d, t) FROM {KS}.comp").one()[0]
    types = [parse_cql_type(n) for n in ("text", "uuid", "date", "timestamp")]
    parts = [serialize_pg(ty, v) for ty, v in zip(types, ["é key", u, date(2020, 2, 29), t],
                                                   strict=True)]  # fmt: skip
    assert murmur3_token(routing_key(parts)) == want
