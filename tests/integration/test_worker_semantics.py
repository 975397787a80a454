"""Property test: any interleaving, duplication and batching of a history converges to Cassandra.

Histories of inserts, partial updates, cell deletions, TTLs, row, partition and
range deletes are generated, rendered as the connector's events, copied 1-3 times
(replicas), shuffled, cut into batches and applied through the real worker
stages into PostgreSQL. The table must equal the reference model's read result.
"""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_worker.schema import TableSchema, schema_from_spec
from cdc_worker.tables import prepare
from cdc_worker.target import DeleteMode, Target
from cdc_worker.write import TableWriter
from tests.support.apply import apply_batch
from tests.support.cassandra_model import Delete, History, Write
from tests.support.events import cell, envelope

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1e6)
COLUMNS = ("a", "b")
SCHEMA = schema_from_spec(
    "ks", "t", ["p"], ["c"], {"p": "int", "c": "int", "a": "int", "b": "text"}
)
INT32 = "org.apache.cassandra.db.marshal.Int32Type"


def to_event(op: Write | Delete, wrap: bool) -> bytes:
    after: dict[str, Any] = {"p": cell(op.p)}
    if isinstance(op, Write):
        after["c"] = cell(op.c)
        for col in COLUMNS:
            if col in op.cells:
                v = op.cells[col]
                after[col] = cell(v, op.expiry if v is not None else None)
            else:
                after[col] = None
        return envelope("i" if op.insert else "u", op.ts, "ks", "t", after, wrap=wrap)
    if op.is_range:
        after["c"] = None
        after.update(dict.fromkeys(COLUMNS))
        after["_range_start"] = {
            "method": "INCL_START_BOUND",
            "values": [] if op.lo is None else [{"name": "c", "value": str(op.lo), "type": INT32}],
        }
        after["_range_end"] = {
            "method": "EXCL_END_BOUND",
            "values": [] if op.hi is None else [{"name": "c", "value": str(op.hi), "type": INT32}],
        }
        return envelope("r", op.ts, "ks", "t", after, wrap=wrap)
    after["c"] = cell(op.c) if op.c is not None else cell(None, op.ts)
    after.update({col: cell(None, op.ts) for col in COLUMNS})
    return envelope("d", op.ts, "ks", "t", after, wrap=wrap)


P = st.integers(0, 2)
C = st.integers(0, 3)
EXPIRY = st.one_of(st.none(), st.none(), st.just(NOW - 10**6), st.just(NOW + 3600 * 10**6))
value_a = st.one_of(st.none(), st.integers(-5, 5))
value_b = st.one_of(st.none(), st.sampled_from(["x", "y", "zz", "tab\there", "new\nline", "q\\"]))


@st.composite
def write_ops(draw: st.DrawFn) -> Write:
    insert = draw(st.booleans())
    cols = draw(st.lists(st.sampled_from(COLUMNS), unique=True, min_size=0 if insert else 1))
    cells = {c: draw(value_a if c == "a" else value_b) for c in cols}
    # The connector carries a TTL only on written non-key cells (deletion_ts); an INSERT of key
    # columns alone USING TTL is indistinguishable from one without (docs/debezium-wire-format.md).
    expiry = draw(EXPIRY) if any(v is not None for v in cells.values()) else None
    return Write(0, draw(P), draw(C), cells, insert, expiry)


@st.composite
def delete_ops(draw: st.DrawFn) -> Delete:
    kind = draw(st.sampled_from(["row", "partition", "range"]))
    p = draw(P)
    if kind == "row":
        return Delete(0, p, draw(C))
    if kind == "partition":
        return Delete(0, p)
    lo, hi = draw(st.one_of(st.none(), C)), draw(st.one_of(st.none(), C))
    return Delete(0, p, None, lo, hi, True)


@st.composite
def histories(draw: st.DrawFn) -> tuple[History, list[list[bytes]]]:
    ops = draw(st.lists(st.one_of(write_ops(), write_ops(), delete_ops()), min_size=1, max_size=20))
    stamps = draw(
        st.lists(st.integers(1, 10**9), unique=True, min_size=len(ops), max_size=len(ops))
    )
    timed: list[Write | Delete] = []
    for op, ts in zip(ops, stamps, strict=True):
        timed.append(
            Write(ts, op.p, op.c, op.cells, op.insert, op.expiry)
            if isinstance(op, Write)
            else Delete(ts, op.p, op.c, op.lo, op.hi, op.is_range)
        )
    wrap = draw(st.booleans())
    events: list[bytes] = []
    for op in timed:
        events += [to_event(op, wrap)] * draw(st.integers(1, 3))  # replicas: RF=3
    seed = draw(st.integers(0, 2**32))
    random.Random(seed).shuffle(events)
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=4)))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    return History(COLUMNS, timed), [b for b in batches if b]


def _setup(
    pg_dsn: str, mode: DeleteMode, table: str
) -> tuple[psycopg.Connection[Any], TableWriter]:
    conn = psycopg.connect(pg_dsn)
    target = Target(SCHEMA, "prop", table, mode)
    with conn.transaction():
        conn.execute("DROP SCHEMA IF EXISTS prop CASCADE")
    return conn, prepare(conn, target, create=True)


def _reset(conn: psycopg.Connection[Any], table: str) -> None:
    with conn.transaction():
        for t in (table, f"_cdc_dead_{table}", f"_cdc_ptomb_{table}", f"_cdc_rtomb_{table}"):
            conn.execute(f"TRUNCATE prop.{t}")


def _check(
    pg_dsn: str, mode: DeleteMode, data: tuple[History, list[list[bytes]]], state: dict[str, Any]
) -> None:
    table = f"t_{mode.value}"
    if "conn" not in state:
        state["conn"], state["writer"] = _setup(pg_dsn, mode, table)
    conn, writer = state["conn"], state["writer"]
    _reset(conn, table)
    history, batches = data
    for batch in batches:
        apply_batch(conn, writer, SCHEMA, batch, NOW)
    where = " WHERE _cdc_deleted_at IS NULL" if mode is DeleteMode.SOFT else ""
    rows = conn.execute(f"SELECT p, c, a, b FROM prop.{table}{where}").fetchall()
    conn.commit()
    got = {(p, c): {"a": a, "b": b} for p, c, a, b in rows}
    assert got == history.result(NOW)


_STATE: dict[str, dict[str, Any]] = {"hard": {}, "soft": {}}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=histories())
def test_hard_delete_mode_converges_to_cassandra(pg_dsn: str, data: Any) -> None:
    _check(pg_dsn, DeleteMode.HARD, data, _STATE["hard"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=histories())
def test_soft_delete_mode_converges_to_cassandra(pg_dsn: str, data: Any) -> None:
    _check(pg_dsn, DeleteMode.SOFT, data, _STATE["soft"])


def test_schema_type_roundtrip() -> None:
    assert isinstance(SCHEMA, TableSchema)
