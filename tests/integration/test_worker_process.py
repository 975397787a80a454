"""The real `cdc-worker` process against the stack's Kafka, PostgreSQL and Redis."""

from __future__ import annotations

import random
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

from tests.integration.test_worker_semantics import to_event
from tests.support import cassandra as stack_cassandra
from tests.support.cassandra_model import Delete, History, Write
from tests.support.events import cell, envelope
from tests.support.worker_proc import (
    WorkerProcess,
    consume_all,
    create_topics,
    free_port,
    produce,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.long]
REPO = Path(__file__).resolve().parents[2]

PT_SCHEMA = {
    "partitionKey": ["p"],
    "clusteringKey": ["c"],
    "columns": {"p": "int", "c": "int", "a": "int", "b": "text"},
}


def _dsn_without_password(dsn: str) -> str:
    u = urlsplit(dsn)
    netloc = f"{u.username}@{u.hostname}:{u.port}"
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


@pytest.fixture
def env(stack: Any) -> dict[str, str]:
    return stack("postgres", "redis", "kafka")  # type: ignore[no-any-return]


@pytest.fixture
def pg(env: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(env["PG_DSN"], autocommit=True) as conn:
        yield conn


def worker_config(env: dict[str, str], name: str, tables: list[dict[str, Any]], **kw: Any) -> Any:
    return {
        "pipeline": name,
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"], "groupId": f"g-{name}",
                  "deadLetterTopic": f"{name}.dlq"},
        "postgres": {"dsn": _dsn_without_password(env["PG_DSN"]), "schema": name},
        "redis": {"url": env["REDIS_URL"]},
        "tables": tables,
        "batch": {"maxEvents": kw.pop("max_events", 2000), "maxWaitMs": 200},
        "httpPort": kw.pop("port", free_port()),
        "ttlSweepIntervalSeconds": 0.5,
        **kw,
    }  # fmt: skip


def pt_table(topic: str, **kw: Any) -> dict[str, Any]:
    return {"topic": topic, "source": {"keyspace": "ks", "table": "t"},
            "target": {"table": "t"}, "schema": PT_SCHEMA, **kw}  # fmt: skip


def _rows(pg: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    return pg.execute(sql).fetchall()


def _http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def source(stack: Any) -> Iterator[tuple[str, str]]:
    """A Cassandra table the worker confirms new columns with: (contact point, keyspace)."""
    env = stack("cassandra")
    contact = env["CASSANDRA_CONTACT_POINTS"]
    cluster = stack_cassandra.cluster(env)
    session = cluster.connect()
    ks = f"wp_{uuid.uuid4().hex[:8]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.t (p int, c int, a int, b text, nickname text, "
                    "PRIMARY KEY (p, c))")  # fmt: skip
    yield contact, ks
    session.execute(f"DROP KEYSPACE {ks}")
    cluster.shutdown()


def test_applies_events_dead_letters_bad_ones_and_evolves_schema(
    env: dict[str, str], pg: psycopg.Connection[Any], tmp_path: Path,
    source: tuple[str, str],
) -> None:  # fmt: skip
    name = f"w{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topics(bootstrap, topic, f"{name}.dlq", partitions=3)
    _contact, ks = source
    table = pt_table(topic)
    table["source"] = {"keyspace": ks, "table": "t"}
    cfg = worker_config(env, name, [table], cassandra=stack_cassandra.worker_config(env))
    events = [
        to_event(Write(10, 1, 1, {"a": 1, "b": "one"}, True), False),
        to_event(Write(11, 1, 2, {"a": 2, "b": "two"}, True), True),  # wrapped form
        b"{not json",
        to_event(Write(12, 1, 1, {"b": "uno"}, False), False),  # partial update keeps a
        to_event(Delete(13, 1, 2), False),
        envelope(
            "u",
            14,
            "ks",
            "t",
            {"p": cell(2), "c": cell(1), "a": None, "b": None, "nickname": cell("new col")},
        ),
        envelope("i", 15, "ks", "t", {"p": cell(3), "c": cell(1), "a": cell("NaN-int"), "b": None}),
        # A column Cassandra does not have: never added, the event is dead-lettered.
        envelope(
            "i", 16, "ks", "t", {"p": cell(4), "c": cell(1), "a": None, "b": None, "bogus": cell(5)}
        ),
    ]
    events = [e.replace(b'"keyspace":"ks"', f'"keyspace":"{ks}"'.encode()) for e in events]
    produce(bootstrap, topic, [(b"k%d" % (i % 2), e) for i, e in enumerate(events)])
    env_ = {
        "POSTGRES_PASSWORD": "cdc",
        "CDC_WORKER_SCHEMA_AGREEMENT_SECONDS": "2",
        **stack_cassandra.worker_env(env),
    }
    w = WorkerProcess(tmp_path, cfg, env_).start()
    try:
        wait_for(lambda: _offsets(pg, name) == len(events), 60, "all offsets stored")
        dead = consume_all(bootstrap, f"{name}.dlq", 3)
        reasons = [dict(m.headers())["cdc.error.message"].decode() for m in dead]
        columns = _rows(pg, "SELECT column_name FROM information_schema.columns WHERE "
                        f"table_schema = '{name}' AND table_name = 't'")  # fmt: skip
        assert ("nickname",) in columns, reasons
        rows = _rows(pg, f"SELECT p, c, a, b, nickname FROM {name}.t ORDER BY p, c")
        assert rows == [(1, 1, 1, "uno", None), (2, 1, None, None, "new col")]
        assert ("bogus",) not in columns
        assert sorted(m.value() for m in dead) == sorted([b"{not json", *events[-2:]]), reasons
        assert any("not in Cassandra's schema" in r and "bogus" in r for r in reasons)
        headers = {k: v.decode() for k, v in dead[0].headers()}
        assert headers["cdc.source.topic"] == topic
        assert headers["cdc.error.class"] == "DecodeError"
        assert {"cdc.source.partition", "cdc.source.offset", "cdc.error.message"} <= set(headers)
        status, body = _http(cfg["httpPort"], "/metrics")
        assert status == 200
        assert 'cdc_worker_events_applied_total{op="write",pipeline="' in body
        assert "cdc_worker_events_dead_lettered_total" in body
        assert _http(cfg["httpPort"], "/readyz")[0] == 200
        assert _http(cfg["httpPort"], "/healthz")[0] == 200
        assert "password" not in w.logs().lower() or "POSTGRES_PASSWORD" in w.logs()
        assert "cdc:cdc" not in w.logs()
    finally:
        w.stop()


def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(
    env: dict[str, str], pg: psycopg.Connection[Any], tmp_path: Path
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topics(bootstrap, topic, f"{name}.dlq", partitions=3)
    rng = random.Random(7)
    history = History(("a", "b"))
    ts = 1_000
    for _ in range(12_000):
        ts += rng.randint(1, 3)
        p, c = rng.randrange(300), rng.randrange(4)
        roll = rng.random()
        if roll < 0.05:
            history.ops.append(Delete(ts, p, c))
        elif roll < 0.06:
            history.ops.append(Delete(ts, p))
        else:
            cols = rng.sample(["a", "b"], rng.randint(1, 2))
            cells = {
                k: (rng.randrange(100) if k == "a" else f"v{rng.randrange(100)}") for k in cols
            }
            history.ops.append(Write(ts, p, c, cells, rng.random() < 0.5))
    events: list[tuple[bytes | None, bytes | None]] = []
    for op in history.ops:
        ev = to_event(op, False)
        events += [(f"{op.p}:{op.c}".encode(), ev)] * rng.randint(1, 3)
    rng.shuffle(events)
    produce(bootstrap, topic, events)
    cfg = worker_config(env, name, [pt_table(topic)], max_events=300)
    total = len(events)

    def applied() -> int:
        return _offsets(pg, name)

    first = WorkerProcess(tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()
    try:
        wait_for(lambda: applied() > total // 10, 90, "some progress before the kill")
        first.kill()
    finally:
        first.stop()
    at_kill = applied()
    assert at_kill < total, "the worker finished before it could be killed"
    second = WorkerProcess(tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()
    try:
        wait_for(
            lambda: applied() == total, 180, f"all {total} events; log:\n{second.logs()[-2000:]}"
        )
    finally:
        second.stop()
    got = {(p, c): {"a": a, "b": b} for p, c, a, b in _rows(pg, f"SELECT p, c, a, b FROM {name}.t")}
    assert got == history.result(int(time.time() * 1e6))
    assert applied() == total


def test_pause_flag_in_redis_is_honoured_within_a_second(
    env: dict[str, str], pg: psycopg.Connection[Any], tmp_path: Path
) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topics(bootstrap, topic, f"{name}.dlq", partitions=1)
    cfg = worker_config(env, name, [pt_table(topic)])
    r = redis.Redis.from_url(env["REDIS_URL"])
    w = WorkerProcess(tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()
    try:
        produce(bootstrap, topic, [(b"k", to_event(Write(1, 1, 1, {"a": 1}, True), False))])
        wait_for(lambda: _count(pg, name) == 1, 60, "the first row")
        wait_for(lambda: any(r.scan_iter(f"cdc:{name}:worker:*")), 5, "a heartbeat in Redis")
        wait_for(lambda: r.hget(f"cdc:{name}:table:ks.t", "applied") == b"1", 5, "table counter")
        assert 0 < r.ttl(f"cdc:{name}:table:ks.t") <= 86_400
        r.set(f"cdc:{name}:paused", "1")
        time.sleep(1.5)
        produce(bootstrap, topic, [(b"k", to_event(Write(2, 1, 2, {"a": 2}, True), False))])
        time.sleep(3)
        assert _count(pg, name) == 1, "a paused worker applied an event"
        r.delete(f"cdc:{name}:paused")
        wait_for(lambda: _count(pg, name) == 2, 30, "the row after resuming")
    finally:
        w.stop()


def _count(pg: psycopg.Connection[Any], name: str) -> int:
    try:
        return int(_rows(pg, f"SELECT count(*) FROM {name}.t")[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


def _offsets(pg: psycopg.Connection[Any], name: str) -> int:
    try:
        return int(
            _rows(pg, f"SELECT COALESCE(sum(next_offset), 0) FROM {name}._cdc_offsets")[0][0]
        )
    except psycopg.errors.UndefinedTable:
        return 0


@pytest.mark.exclusive  # stops a shared stack service
def test_outages_are_retried_not_dead_lettered_and_redis_is_optional(
    env: dict[str, str], pg: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """PostgreSQL stops mid-stream: the worker backs off, is not ready, and catches up after.

    Redis points at a port where nothing listens and an OTLP collector receives the spans.
    """
    import http.server
    import threading

    spans: list[str] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            spans.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    collector = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    name = f"o{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topics(bootstrap, topic, f"{name}.dlq", partitions=2)
    cfg = worker_config(
        env, name, [pt_table(topic)],
        redis={"url": f"redis://127.0.0.1:{free_port()}/0"},
        otlpEndpoint=f"http://127.0.0.1:{collector.server_address[1]}",
    )  # fmt: skip
    w = WorkerProcess(tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()
    stack_cmd = [str(REPO / "hack" / "stack")]
    try:
        first = [(b"a", to_event(Write(i, 1, i, {"a": i}, True), False)) for i in range(1, 51)]
        produce(bootstrap, topic, first)
        wait_for(lambda: _offsets(pg, name) == 50, 60, "the first 50 events")
        pg.close()
        subprocess.run([*stack_cmd, "down", "postgres"], check=True, capture_output=True)
        try:
            second = [(b"b", to_event(Write(100 + i, 2, i, {"a": i}, True), False))
                      for i in range(50)]  # fmt: skip
            produce(bootstrap, topic, second)
            wait_for(lambda: _http(cfg["httpPort"], "/readyz")[0] == 503, 30, "readyz to fail")
            assert "unavailable" in _http(cfg["httpPort"], "/readyz")[1]
            assert _http(cfg["httpPort"], "/healthz")[0] == 200
        finally:
            subprocess.run([*stack_cmd, "up", "postgres"], check=True, capture_output=True)
        with psycopg.connect(env["PG_DSN"], autocommit=True) as pg2:
            wait_for(lambda: _offsets(pg2, name) == 100, 90, "catching up after the outage")
            assert pg2.execute(f"SELECT count(*) FROM {name}.t").fetchone() == (100,)
        wait_for(lambda: _http(cfg["httpPort"], "/readyz")[0] == 200, 30, "ready again")
        assert consume_all(bootstrap, f"{name}.dlq", 1, timeout=5) == []
        _, metrics = _http(cfg["httpPort"], "/metrics")
        assert 'cdc_worker_errors_total{kind="transient"' in metrics
        wait_for(lambda: "/v1/traces" in spans, 30, "spans at the OTLP endpoint")
    finally:
        w.stop()
        collector.shutdown()


def test_a_table_that_cannot_be_served_is_quarantined_alone(
    env: dict[str, str], pg: psycopg.Connection[Any], tmp_path: Path,
    source: tuple[str, str],
) -> None:  # fmt: skip
    """A table missing in Cassandra (no schema to be had) does not stop the others."""
    name = f"q{uuid.uuid4().hex[:8]}"
    good, bad = f"{name}.ks.t", f"{name}.ks.gone"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topics(bootstrap, good, bad, f"{name}.dlq", partitions=1)
    _contact, ks = source
    gone = {"topic": bad, "source": {"keyspace": ks, "table": "gone"}, "target": {"table": "gone"}}
    cfg = worker_config(env, name, [pt_table(good), gone],
                        cassandra=stack_cassandra.worker_config(env))  # fmt: skip
    produce(bootstrap, good, [(b"k", to_event(Write(10, 1, 1, {"a": 1, "b": "x"}, True), False))])
    w = WorkerProcess(
        tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc", **stack_cassandra.worker_env(env)}
    ).start()
    try:
        wait_for(lambda: _offsets(pg, name) == 1, 60, f"the good table; log:\n{w.logs()[-2000:]}")
        assert _rows(pg, f"SELECT p, c, a, b FROM {name}.t") == [(1, 1, 1, "x")]
        assert _http(cfg["httpPort"], "/readyz")[0] == 200
        metrics = _http(cfg["httpPort"], "/metrics")[1]
        assert f'cdc_worker_table_quarantined{{pipeline="{name}",table="{ks}.gone"}} 1.0' in metrics
        why = redis.Redis.from_url(env["REDIS_URL"]).hget(f"cdc:{name}:table:{ks}.gone",
                                                          "quarantined")  # fmt: skip
        assert why is not None
        assert b"SchemaUnavailable" in why
    finally:
        w.stop()
