"""Verify and repair while the pipeline streams, and a TRUNCATE the connector never emits.

The real pipeline: CQL into the stack's Cassandra → the Debezium agent → Kafka → a worker →
PostgreSQL, while a writer thread keeps inserting, updating, deleting rows and cells and
whole partitions of 400 rows with current write times. Then:
- verify during the stream reports 0 differing rows: what the stream has not applied yet is
  held back as in flight (newer than the lag, or a deletion, whose time a SELECT cannot show,
  until it has been seen `lag` ago with nothing of its row applied since);
- rows drifted by hand in PostgreSQL (partitions the stream never touches) are reported
  exactly, and repair during the stream fixes them without disturbing the stream's rows;
- once the stream stops and drains, PostgreSQL equals what Cassandra SELECTs, row by row;
- `TRUNCATE` in Cassandra (no change event) is reported row by row and repaired, and rows
  written after it replicate as usual.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from cassandra.cluster import Session

from cdc_worker.config import load_config
from cdc_worker.scan.run import ScanOptions, ScanResult, run_scan
from tests.support import cassandra as stack_cassandra
from tests.support.captured import Captured, Sides, capture
from tests.support.worker_proc import WorkerProcess

# Exclusive: the in-flight rule needs the pipeline's lag under LAG, and every table created by a
# test running alongside restarts the shared agent (20 s or more without capture under load).
pytestmark = [pytest.mark.integration, pytest.mark.exclusive]

STREAMED = 40  # partitions 0..39 get the stream's writes
QUIET = range(100, 110)  # partitions the stream never touches (drifted by hand)
ROWS = 10  # clustering rows per partition
LAG = 20.0  # seconds: generous when no agent restart intervenes (the pipeline's p95 is ~0.5 s)


class Stream(threading.Thread):
    """Mixed writes with current write times until stopped: inserts, partial updates, row,
    cell and partition deletes over the streamed partitions."""

    def __init__(self, session: Session, table: str) -> None:
        super().__init__(daemon=True)
        self.s, self.t = session, table
        self.stop = threading.Event()
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(11)
        s, t = self.s, self.t
        ins = s.prepare(f"INSERT INTO {t} (p, c, a, b) VALUES (?, ?, ?, ?)")
        upd = s.prepare(f"UPDATE {t} SET a = ? WHERE p = ? AND c = ?")
        rdel = s.prepare(f"DELETE FROM {t} WHERE p = ? AND c = ?")
        cdel = s.prepare(f"DELETE b FROM {t} WHERE p = ? AND c = ?")
        pdel = s.prepare(f"DELETE FROM {t} WHERE p = ?")
        try:
            while not self.stop.is_set():
                p, c, x = rng.randrange(STREAMED), rng.randrange(ROWS), rng.random()
                if x < 0.45:
                    s.execute(ins, (p, c, rng.randrange(1000), f"b{rng.randrange(1000)}"))
                elif x < 0.75:
                    s.execute(upd, (rng.randrange(1000), p, c))
                elif x < 0.88:
                    s.execute(rdel, (p, c))
                elif x < 0.98:
                    s.execute(cdel, (p, c))
                else:
                    s.execute(pdel, (p,))
                self.writes += 1
                time.sleep(0.008)
        except BaseException as e:  # reported by the test
            self.error = e


@pytest.fixture
def pipeline(
    stack: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[tuple[dict[str, str], Session, Captured, Path]]:
    env = stack("postgres", "kafka", "cassandra", "debezium")
    cluster = stack_cassandra.cluster(env, protocol_version=5)
    session = cluster.connect()
    cap = capture(env, session, "sstream", "p int, c int, a int, b text, PRIMARY KEY (p, c)")
    ks, name = cap.keyspace, cap.name
    cfg = cap.worker_config(env)
    path = tmp_path / "scan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    w = WorkerProcess(
        tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc", **stack_cassandra.worker_env(env)}
    ).start()
    try:
        yield env, session, cap, path
    finally:
        w.stop()
        session.execute(f"DROP KEYSPACE {ks}")
        cluster.shutdown()
        with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
            pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def scan(env: dict[str, str], config: Path, kind: str, **kw: Any) -> ScanResult:
    cfg = load_config(config, {})
    opts = ScanOptions(kind, subranges=64, resume=False, **kw)
    login = stack_cassandra.worker_env(env)
    with pytest.MonkeyPatch.context() as mp:  # the schema lookup reads the process environment
        for key, value in login.items():
            mp.setenv(key, value)
        return run_scan(cfg, opts, {"POSTGRES_PASSWORD": "cdc", **login})


def test_verify_and_repair_during_a_stream_then_a_truncate(
    pipeline: tuple[dict[str, str], Session, Captured, Path],
) -> None:
    env, session, cap, config = pipeline
    table, schema = cap.table, cap.name
    ins = session.prepare(f"INSERT INTO {table} (p, c, a, b) VALUES (?, ?, ?, ?)")
    for p in [*range(STREAMED), *QUIET]:
        for c in range(ROWS):
            session.execute(ins, (p, c, p * 100 + c, f"v{p}-{c}"))
    pg = psycopg.connect(env["PG_DSN"], autocommit=True)

    sides = Sides(session, pg, cap, "p, c, a, b")
    stream = Stream(session, table)
    try:
        sides.wait_equal(120, "the initial rows replicated")
        stream.start()
        time.sleep(3)
        res = scan(env, config, "verify", lag_seconds=LAG, recheck_wait_seconds=LAG + 10)
        assert res.rowsChecked >= (len(QUIET) + 1) * ROWS
        assert res.rowsDiffering == 0, res.differences

        drifted = {(100, 1), (101, 2), (102, 3)}
        pg.execute(f"UPDATE {schema}.t SET a = -1 WHERE p = 100 AND c = 1")
        pg.execute(f"DELETE FROM {schema}.t WHERE p = 101 AND c = 2")
        pg.execute(f"UPDATE {schema}.t SET b = NULL WHERE p = 102 AND c = 3")
        res = scan(env, config, "repair", lag_seconds=LAG, recheck_wait_seconds=LAG + 10)
        found = {tuple(int(x.split(":")[1]) for x in _split(d["key"])) for d in res.differences}
        assert found == drifted, res.differences
        assert (res.rowsDiffering, res.rowsRepaired) == (3, 3)
        assert stream.is_alive(), stream.error
        assert stream.writes > 100
    finally:
        stream.stop.set()
        stream.join(timeout=30)
    assert stream.error is None, stream.error
    sides.wait_equal(120, "PostgreSQL to equal Cassandra after the stream")
    assert sides.postgres(), "the stream left rows"

    # TRUNCATE: Cassandra emits no change event for it; verify sees it row by row.
    before = len(sides.postgres())
    session.execute(f"TRUNCATE {table}")
    res = scan(env, config, "verify", lag_seconds=0)
    assert (res.rowsChecked, res.rowsDiffering) == (0, before)
    assert {d["kind"] for d in res.differences} == {"absent_in_cassandra"}
    res = scan(env, config, "repair", lag_seconds=0)
    assert res.rowsRepaired == before
    assert sides.postgres() == [] == sides.cassandra()
    session.execute(ins, (7, 7, 7, "after the truncate"))
    sides.wait_equal(60, "a row written after the truncate replicated")
    assert sides.postgres() == [(7, 7, 7, "after the truncate")]
    pg.close()


def _split(key_text: str) -> list[str]:
    """`len:text` fields of a canonical key (`2:100` + `1:1` -> ['3:100', '1:1'])."""
    out, i = [], 0
    while i < len(key_text):
        n, _, rest = key_text[i:].partition(":")
        out.append(f"{n}:{rest[: int(n)]}")
        i += len(n) + 1 + int(n)
    return out
