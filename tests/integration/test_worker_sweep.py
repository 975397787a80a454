"""TTL expiry at capacity: the sweeper keeps up with ≥ 20,000 expiries per second.

Rows are written through the worker's own stages with TTL expiries in whole seconds (as
Cassandra's `deletion_ts` are), RATE rows expiring at each of SECONDS consecutive second
boundaries: a burst every second, sustained. The real `Sweeper` runs on its thread with its own
connection, every INTERVAL seconds. While the expiries happen, a watcher checks that no row is
served more than twice INTERVAL after its expiry (each expiring row's value `a` is its own expiry
in µs, so the check does not rely on the worker's metadata); at the end, rows with a live cell
besides the expired one keep it, and rows without TTL were not touched at all.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Any, cast

import psycopg
import pytest

from cdc_worker import metrics as M
from cdc_worker.apply import TableRuntime
from cdc_worker.schema import schema_from_spec
from cdc_worker.sweep import Sweeper
from cdc_worker.tables import prepare
from cdc_worker.target import DeleteMode, Target
from tests.support.apply import apply_batch
from tests.support.events import cell, envelope

pytestmark = [pytest.mark.integration, pytest.mark.exclusive]

RATE = 22_000  # rows expiring per second
SECONDS = 4
INTERVAL = 1.0  # ttlSweepIntervalSeconds
MIXED_EVERY = 10  # every 10th expiring row also has a live cell (it stays, without `a`)
LIVE = 2_000  # rows without TTL, and rows whose TTL is far away
SCHEMA = schema_from_spec("ks", "t", ["p"], ["c"], {"p": "int", "c": "int", "a": "bigint",
                                                     "b": "text"})  # fmt: skip


def _event(p: int, c: int, ts: int, a: int | None, b: str | None, exp: int | None) -> bytes:
    after: dict[str, Any] = {"p": cell(p), "c": cell(c), "a": None, "b": None}
    if a is not None:
        after["a"] = cell(a, exp)
    if b is not None:
        after["b"] = cell(b, None)
    return envelope("u" if exp is None else "i", ts, "ks", "t", after)


def test_sweeper_keeps_up_with_20000_expiries_per_second(pg_dsn: str) -> None:
    name = f"sw{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(pg_dsn)
    target = Target(SCHEMA, name, "t", DeleteMode.HARD)
    writer = prepare(conn, target, create=True)
    start = time.time()
    # Expiries start once the load is surely done; whole seconds, as Cassandra sends them.
    first = math.ceil(start) + 60
    ts = int(start * 1e6) - 10_000_000
    events: list[bytes] = []
    for s in range(SECONDS):
        exp = (first + s) * 1_000_000
        for i in range(RATE):
            p, c = s, i
            events.append(_event(p, c, ts, exp, None, exp))
            if i % MIXED_EVERY == 0:
                events.append(_event(p, c, ts, None, f"keep{i}", None))
    for i in range(LIVE):
        events.append(_event(1000, i, ts, i, f"live{i}", None))
        far = (first + 3600) * 1_000_000
        events.append(_event(1001, i, ts, i, None, far))
    for k in range(0, len(events), 20_000):
        apply_batch(conn, writer, SCHEMA, events[k : k + 20_000], int(time.time() * 1e6))
    conn.commit()
    loaded = time.time()
    assert loaded < first - 2, f"loading took {loaded - start:.0f}s: expiries already started"
    live_before = conn.execute(
        f"SELECT p, c, a, b, _cdc_ts, _cdc_updated_at FROM {name}.t WHERE p >= 1000 ORDER BY 1, 2"
    ).fetchall()
    assert len(live_before) == 2 * LIVE
    conn.commit()

    tables = {"topic": TableRuntime(cast(Any, None), target, writer)}
    sweeper = Sweeper(tables, lambda: psycopg.connect(pg_dsn), 864_000, name)
    stale: list[tuple[float, int]] = []
    checks = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal checks
        with psycopg.connect(pg_dsn, autocommit=True) as w:
            while not stop.is_set():
                now = time.time()
                late = int((now - 2 * INTERVAL) * 1e6)
                row = w.execute(
                    f"SELECT count(*) FROM {name}.t WHERE p < 1000 AND a <= %s", (late,)
                ).fetchone()
                assert row is not None
                checks += 1
                if row[0]:
                    stale.append((now, int(row[0])))
                stop.wait(0.2)

    time.sleep(max(0.0, first - 1 - time.time()))
    sweeper.start(INTERVAL)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(max(0.0, first + SECONDS + 2 * INTERVAL + 1 - time.time()))
    finally:
        stop.set()
        watcher.join(30)
        sweeper.stop()
    rate = sweeper.stats.rows / max(sweeper.stats.busy_s, 1e-9)
    print(
        f"\nsweep: {sweeper.stats.rows} rows in {sweeper.stats.busy_s:.2f}s of sweep "
        f"transactions = {rate:,.0f} rows/s over {sweeper.stats.passes} passes"
    )
    assert checks >= 3 * SECONDS
    assert not stale, f"rows served more than {2 * INTERVAL}s after expiry: {stale[:5]}"

    expiring = conn.execute(
        f"SELECT count(*), count(a), count(b) FROM {name}.t WHERE p < 1000"
    ).fetchone()
    mixed = SECONDS * len(range(0, RATE, MIXED_EVERY))
    assert expiring == (mixed, 0, mixed), "only the live cells of the mixed rows remain"
    dead = conn.execute(f"SELECT count(*) FROM {name}._cdc_dead_t").fetchone()
    assert dead == (SECONDS * RATE - mixed,), "expired rows keep their tombstone metadata"
    live_after = conn.execute(
        f"SELECT p, c, a, b, _cdc_ts, _cdc_updated_at FROM {name}.t WHERE p >= 1000 ORDER BY 1, 2"
    ).fetchall()
    assert live_after == live_before, "the sweeper touched live rows"
    pending = M.REGISTRY.get_sample_value(
        "cdc_worker_expired_rows_pending", {"pipeline": name, "table": "ks.t"}
    )
    assert pending == 0
    assert sweeper.stats.rows == SECONDS * RATE
    with conn.transaction():
        conn.execute(f"DROP SCHEMA {name} CASCADE")
    conn.close()
