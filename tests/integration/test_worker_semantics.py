"""Property test: any interleaving, duplication and batching of a history converges to Cassandra.

Histories of inserts, partial updates, cell deletions, TTLs, row, partition and
range deletes are generated, rendered as the connector's events, copied 1-3 times
(replicas), shuffled, cut into batches and applied through the real worker
stages into PostgreSQL. The table must equal the reference model's read result.
Timestamps come from a small set, so writes, expiring writes and deletes often
share one: ties are then decided as Cassandra does (tests/support/cassandra_model.py,
with its own value serialization), for values of several types chosen to have
different text and byte orders (negative numbers, pre-1970 times, unicode, blobs).
"""

from __future__ import annotations

import base64
import random
import time
from datetime import UTC, datetime
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
TYPES = {"a": "int", "b": "text", "t": "timestamp", "x": "blob", "d": "double", "n": "varint"}
COLUMNS = tuple(TYPES)
SCHEMA = schema_from_spec("ks", "t", ["p"], ["c"], {"p": "int", "c": "int", **TYPES})
INT32 = "org.apache.cassandra.db.marshal.Int32Type"


def _json(col: str, v: Any) -> Any:
    """A model value as the connector sends it (varint as a string: varint.handling.mode)."""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return str(v) if v is not None and TYPES.get(col) == "varint" else v


def to_event(op: Write | Delete, wrap: bool, columns: tuple[str, ...] = ("a", "b")) -> bytes:
    after: dict[str, Any] = {"p": cell(op.p)}
    if isinstance(op, Write):
        after["c"] = cell(op.c)
        for col in columns:
            if col in op.cells:
                v = op.cells[col]
                after[col] = cell(_json(col, v), op.expiry if v is not None else None)
            else:
                after[col] = None
        return envelope("i" if op.insert else "u", op.ts, "ks", "t", after, wrap=wrap)
    if op.is_range:
        after["c"] = None
        after.update(dict.fromkeys(columns))
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
    after.update({col: cell(None, op.ts) for col in columns})
    return envelope("d", op.ts, "ks", "t", after, wrap=wrap)


P = st.integers(0, 2)
C = st.integers(0, 3)
HOUR = 3600 * 10**6
EXPIRY = st.sampled_from([None, None, NOW - 10**6, NOW + HOUR, NOW + 2 * HOUR])
VALUES = {
    "a": st.sampled_from([-(2**31), -1000, -1, 0, 1, 9, 10, 1000, 2**31 - 1]),
    "b": st.sampled_from(["x", "y", "zz", "Z", "", "é", "日本", "tab\there", "new\nline", "q\\"]),
    "t": st.sampled_from([-(10**12), -1, 0, 999, 1000, 1_700_000_000_000]),  # ms, pre-1970 too
    "x": st.sampled_from([b"", b"\x00", b"\x00\xff", b"\x01", b"\x7f", b"\x80", b"\xff"]),
    "d": st.sampled_from([-1e300, -1.5, -0.0, 0.0, 1.5, 2.5e-300]),
    "n": st.sampled_from([-(10**20), -129, -128, -1, 0, 1, 127, 128, 255, 10**20]),
}


@st.composite
def write_ops(draw: st.DrawFn) -> Write:
    insert = draw(st.booleans())
    cols = draw(st.lists(st.sampled_from(COLUMNS), unique=True, min_size=0 if insert else 1))
    cells = {c: draw(st.one_of(st.none(), VALUES[c])) for c in cols}
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
    # Few distinct timestamps: equal ones (ties) are the rule, not the exception.
    stamps = draw(st.lists(st.integers(1, 6), min_size=len(ops), max_size=len(ops)))
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
        events += [to_event(op, wrap, COLUMNS)] * draw(st.integers(1, 3))  # replicas: RF=3
    seed = draw(st.integers(0, 2**32))
    random.Random(seed).shuffle(events)
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=4)))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    return History(COLUMNS, timed, TYPES), [b for b in batches if b]


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
    rows = conn.execute(f"SELECT p, c, {', '.join(COLUMNS)} FROM prop.{table}{where}").fetchall()
    conn.commit()
    got = {(r[0], r[1]): dict(zip(COLUMNS, map(_model_value, r[2:]), strict=True)) for r in rows}
    assert got == history.result(NOW)


def _model_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v - datetime(1970, 1, 1, tzinfo=UTC)) // (datetime.resolution * 1000)
    if hasattr(v, "as_integer_ratio") and not isinstance(v, float | int):
        return int(v)  # numeric (varint)
    return v


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


TIE_TYPES = {
    "i": "int", "s": "text", "ts": "timestamp", "dt": "date", "tm": "time", "du": "duration",
    "ip": "inet", "bl": "blob", "de": "decimal", "vi": "varint", "db": "double",
    "bo": "boolean", "u": "uuid", "l": "list<int>", "m": "frozen<map<int, text>>",
    "tu": "frozen<tuple<int, text>>",
}  # fmt: skip
# (loses, wins) at an equal timestamp, as a Cassandra 5.0.9 node decided them (tiebreak.py).
TIE_VALUES: dict[str, tuple[Any, Any]] = {
    "i": (1000, -1), "s": ("z", "é"), "ts": (946_684_800_000, -1000),
    "dt": ("1969-01-01", "2000-01-01"), "tm": (3600 * 10**9, 7200 * 10**9),
    "du": ({"months": 0, "days": 1, "nanos": 0}, {"months": 1, "days": 0, "nanos": 0}),
    "ip": ("/::1", "/1.2.3.4"), "bl": ("AP8=", "AQ=="), "de": ("1.5", "1.50"), "vi": ("255", "1"),
    "db": (1.0, -1.0), "bo": (False, True),
    "u": ("00000000-0000-0000-0000-000000000001", "ffffffff-0000-0000-0000-000000000000"),
    "l": ([1], [-1]), "m": ({"1": "b"}, {"1": "a", "2": "b"}), "tu": ([1, "a"], [-1, "a"]),
}  # fmt: skip


def test_equal_timestamps_across_batches_follow_cassandra_for_every_type(pg_dsn: str) -> None:
    schema = schema_from_spec("ks", "t", ["p"], [], {"p": "int", **TIE_TYPES})
    conn = psycopg.connect(pg_dsn)
    with conn.transaction():
        conn.execute("DROP SCHEMA IF EXISTS ties CASCADE")
    writer = prepare(conn, Target(schema, "ties", "t", DeleteMode.HARD), create=True)

    def ev(p: int, which: int) -> bytes:
        after = {"p": cell(p)} | {c: cell(v[which]) for c, v in TIE_VALUES.items()}
        return envelope("u", 5, "ks", "t", after)

    apply_batch(conn, writer, schema, [ev(0, 1)], NOW)  # the expected values
    apply_batch(conn, writer, schema, [ev(1, 1)], NOW)  # stored wins against the batch
    apply_batch(conn, writer, schema, [ev(1, 0)], NOW)
    apply_batch(conn, writer, schema, [ev(2, 0)], NOW)  # the batch wins against stored
    apply_batch(conn, writer, schema, [ev(2, 1)], NOW)
    apply_batch(conn, writer, schema, [ev(3, 0), ev(3, 1), ev(4, 1), ev(4, 0)], NOW)  # coalescer
    cols = ", ".join(f"{c}::text" for c in TIE_TYPES)
    rows = conn.execute(f"SELECT p, {cols} FROM ties.t ORDER BY p").fetchall()
    conn.execute("DROP SCHEMA ties CASCADE")
    conn.commit()
    expected = rows[0][1:]
    for row in rows[1:]:
        assert dict(zip(TIE_TYPES, row[1:], strict=True)) == dict(
            zip(TIE_TYPES, expected, strict=True)
        ), row[0]
    assert len(rows) == 5


def test_soft_deleted_rows_shown_values_are_not_live_cells(pg_dsn: str) -> None:
    """A soft-deleted row shows its last values; a later write must not revive them."""
    schema = schema_from_spec(
        "ks", "t", ["p"], ["c"], {"p": "int", "c": "int", "a": "int", "b": "text"}
    )
    conn = psycopg.connect(pg_dsn)
    with conn.transaction():
        conn.execute("DROP SCHEMA IF EXISTS softshow CASCADE")
    writer = prepare(conn, Target(schema, "softshow", "t", DeleteMode.SOFT), create=True)

    def ev(ts: int, **cells: Any) -> bytes:
        after = {"p": cell(1), "c": cell(1), "a": None, "b": None}
        return envelope("u", ts, "ks", "t", after | {k: cell(v) for k, v in cells.items()})

    def shown() -> list[tuple[Any, ...]]:
        rows = conn.execute("SELECT a, b, _cdc_deleted_at IS NOT NULL FROM softshow.t").fetchall()
        conn.commit()
        return rows

    apply_batch(conn, writer, schema, [ev(10, a=5)], NOW)
    apply_batch(conn, writer, schema, [ev(12, a=None)], NOW)
    assert shown() == [(5, None, True)]  # deleted, last values shown
    apply_batch(conn, writer, schema, [ev(12, a=9)], NOW)  # loses to the tombstone at 12
    assert shown() == [(5, None, True)]
    apply_batch(conn, writer, schema, [ev(13, b="x")], NOW)  # revives the row, not `a`
    assert shown() == [(None, "x", False)]
    conn.execute("DROP SCHEMA softshow CASCADE")
    conn.commit()
