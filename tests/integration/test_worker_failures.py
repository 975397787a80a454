"""Per-event failures against the stack's PostgreSQL: bad events are dead-lettered, others apply.

The batch applier runs for real (decode, coalesce, staging, merge, offsets); only
Kafka is replaced by plain messages and a sink that collects dead letters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from cdc_worker import apply
from cdc_worker.apply import BatchApplier, Message, TableRuntime
from cdc_worker.config import TableConfig
from cdc_worker.dlq import DeadLetter
from cdc_worker.offsets import OffsetStore
from cdc_worker.schema import TableSchema, schema_from_spec
from cdc_worker.tables import prepare
from cdc_worker.target import DeleteMode, Target
from tests.support.events import cell, envelope

pytestmark = pytest.mark.integration

INT32 = "org.apache.cassandra.db.marshal.Int32Type"


@dataclass
class Msg:
    """What the applier needs of a Kafka message."""

    body: bytes | None
    off: int
    tp: str = "t.ks.t"

    def topic(self) -> str | None:
        return self.tp

    def partition(self) -> int | None:
        return 0

    def offset(self) -> int | None:
        return self.off

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes | None:
        return self.body


@dataclass
class Sink:
    letters: list[DeadLetter] = field(default_factory=list)

    def send(self, letters: list[DeadLetter], timeout: float = 30.0) -> None:
        self.letters += letters


@dataclass
class Rig:
    conn: psycopg.Connection[Any]
    applier: BatchApplier
    sink: Sink
    schema: str

    def run(self, *bodies: bytes | None) -> None:
        msgs: list[Message] = [Msg(b, i) for i, b in enumerate(bodies)]
        self.applier.write(self.applier.decode(msgs))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(sql.format(s=self.schema)).fetchall()
        self.conn.commit()
        return rows


def rig(pg_dsn: str, schema: TableSchema) -> Iterator[Rig]:
    name = f"f{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(pg_dsn)
    target = Target(schema, name, "t", DeleteMode.HARD)
    cfg = TableConfig.model_validate(
        {"topic": "t.ks.t", "source": {"keyspace": "ks", "table": "t"}}
    )
    offsets = OffsetStore(name, "g")
    offsets.ensure(conn)
    tables = {"t.ks.t": TableRuntime(cfg, target, prepare(conn, target, create=True))}
    sink = Sink()
    applier = BatchApplier(tables, offsets, sink, None, lambda: psycopg.connect(pg_dsn))  # type: ignore[arg-type]
    try:
        yield Rig(conn, applier, sink, name)
    finally:
        _close(applier)
        conn.execute(f"DROP SCHEMA {name} CASCADE")
        conn.commit()
        conn.close()


def _close(applier: BatchApplier) -> None:
    for c in (applier.conn, applier.control):
        if c is not None:
            c.close()


DEC = schema_from_spec("ks", "t", ["p"], ["c"], {"p": "int", "c": "int", "v": "decimal"})


@pytest.fixture
def dec(pg_dsn: str) -> Iterator[Rig]:
    yield from rig(pg_dsn, DEC)


def write(ts: int, p: int, c: int, v: str) -> bytes:
    return envelope("i", ts, "ks", "t", {"p": cell(p), "c": cell(c), "v": cell(v)})


def range_delete(ts: int, p: int, lo: int, hi: int | None) -> bytes:
    def bound(method: str, v: int | None) -> dict[str, Any]:
        values = [] if v is None else [{"name": "c", "value": str(v), "type": INT32}]
        return {"method": method, "values": values}

    after = {"p": cell(p), "c": None, "v": None, "_range_start": bound("INCL_START_BOUND", lo),
             "_range_end": bound("EXCL_END_BOUND", hi)}  # fmt: skip
    return envelope("r", ts, "ks", "t", after)


def test_per_event_fallback_applies_range_deletes_only_to_their_own_partition(dec: Rig) -> None:
    dec.run(write(1, 1, 5, "1.5"), write(1, 2, 5, "2.5"), write(1, 2, 7, "2.7"))
    rejected = write(2, 3, 1, "1e200000")  # numeric overflow: PostgreSQL rejects the batch
    dec.run(rejected, range_delete(3, 1, 100, None), range_delete(4, 2, 5, 6))
    assert dec.rows("SELECT p, c, v::text FROM {s}.t ORDER BY p, c") == [
        (1, 5, "1.5"),
        (2, 7, "2.7"),
    ]
    assert [(d.value, d.error_class) for d in dec.sink.letters] == [
        (rejected, "NumericValueOutOfRange")
    ]
    assert dec.rows("SELECT next_offset FROM {s}._cdc_offsets") == [(3,)]


CLASH = schema_from_spec(
    "ks", "t", ["ts"], ["idx"],
    {"ts": "int", "idx": "int", "_cdc_ts": "text", "alive": "int", "del": "text", "_cdcs0": "int"},
)  # fmt: skip


@pytest.fixture
def clash(pg_dsn: str) -> Iterator[Rig]:
    yield from rig(pg_dsn, CLASH)


def test_columns_named_like_the_workers_own_are_replicated_under_safe_names(clash: Rig) -> None:
    def ev(op: str, ts: int, k: int, c: int | None, **cells: Any) -> bytes:
        after = {"ts": cell(k), "idx": None if c is None else cell(c), "_cdc_ts": None,
                 "alive": None, "del": None, "_cdcs0": None}  # fmt: skip
        after.update({n: cell(v) for n, v in cells.items()})
        return envelope(op, ts, "ks", "t", after)

    clash.run(
        ev("i", 1, 1, 1, _cdc_ts="a", alive=1, **{"del": "x"}, _cdcs0=5),
        ev("i", 1, 1, 2, alive=2),
        ev("i", 1, 2, 1, alive=3),
        ev("d", 2, 2, None),  # partition delete: the pdel side table has a `ts` key column
        ev("u", 3, 1, 2, _cdc_ts="b"),
        ev("u", 4, 3, 1, _cdc_ts="c"),
    )
    sql = 'SELECT ts, idx, "__cdc_ts", alive, del, "__cdcs0" FROM {s}.t ORDER BY ts, idx'
    assert clash.rows(sql) == [(1, 1, "a", 1, "x", 5), (1, 2, "b", 2, None, None),
                               (3, 1, "c", None, None, None)]  # fmt: skip
    assert clash.sink.letters == []


def new_columns_are(monkeypatch: pytest.MonkeyPatch, types: dict[str, str]) -> None:
    """Where the new columns' types come from (Cassandra, the wrapper) is not what is tested."""
    for name in ("confirm_new_columns", "infer_new_columns"):
        if hasattr(apply, name):
            monkeypatch.setattr(apply, name, lambda *_a, **_k: dict(types))


def test_new_column_in_the_workers_namespace_is_added_under_a_safe_name(
    dec: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_columns_are(monkeypatch, {"_cdc_exp": "text"})
    after = {"p": cell(1), "c": cell(1), "v": cell("1.5"), "_cdc_exp": cell("new")}
    dec.run(envelope("i", 1, "ks", "t", after))
    assert dec.rows('SELECT p, c, v::text, "__cdc_exp" FROM {s}.t') == [(1, 1, "1.5", "new")]
    assert dec.sink.letters == []


def test_poison_events_are_dead_lettered_and_the_rest_applies(
    dec: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_columns_are(monkeypatch, {"extra": "text"})
    dec.conn.execute(f"ALTER TABLE {dec.schema}.t ADD COLUMN extra integer")
    dec.conn.commit()
    bad_column = envelope(
        "u", 2, "ks", "t", {"p": cell(1), "c": cell(1), "v": None, "extra": cell("not an int")}
    )
    bad_bound = range_delete(3, 1, 0, 9).replace(b'"value":"0"', b'"value":"zero"')
    assert bad_bound != range_delete(3, 1, 0, 9)
    dec.run(write(1, 1, 1, "1.5"), bad_column, bad_bound, write(4, 1, 2, "2.5"))
    assert dec.rows("SELECT p, c, v::text FROM {s}.t ORDER BY c") == [(1, 1, "1.5"), (1, 2, "2.5")]
    letters = {d.value: (d.error_class, d.message) for d in dec.sink.letters}
    assert set(letters) == {bad_column, bad_bound}
    assert letters[bad_column][0] == "DecodeError"
    assert "extra" in letters[bad_column][1]
    assert letters[bad_bound][0] == "DecodeError"
    assert dec.rows("SELECT next_offset FROM {s}._cdc_offsets") == [(4,)]


def _configured_worker(dec: Rig, pg_dsn: str) -> BatchApplier:
    """Another worker of `dec`'s table, its writer built now from the configured schema."""
    writer = prepare(dec.conn, Target(DEC, dec.schema, "t", DeleteMode.HARD), create=True)
    dec.conn.commit()
    cfg = dec.applier.tables["t.ks.t"].cfg
    return BatchApplier({"t.ks.t": TableRuntime(cfg, writer.t, writer)},
                        OffsetStore(dec.schema, "g"), dec.sink, None,
                        lambda: psycopg.connect(pg_dsn))  # type: ignore[arg-type]  # fmt: skip


def _delete_then_write(applier: BatchApplier) -> None:
    """Row (1, 1) deleted at 2, then `v` written at 3, by `applier`, which is then closed."""
    try:
        msgs: list[Message] = [
            Msg(envelope("d", 2, "ks", "t", {"p": cell(1), "c": cell(1), "v": None}), 1),
            Msg(write(3, 1, 1, "3.5"), 2),
        ]
        applier.write(applier.decode(msgs))
    finally:
        _close(applier)


def test_a_worker_started_after_another_added_a_column_knows_it(
    dec: Rig, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker (re)started with the configured schema, after another worker added a column by
    schema evolution: its writer must learn the column from the table, or the schema-version
    fence (which looks only for columns newer than the writer) lets it delete a row and keep the
    new column's value (found by test_worker_multi: a rebalance started such a worker)."""
    new_columns_are(monkeypatch, {"n": "text"})
    dec.run(envelope("i", 1, "ks", "t", {"p": cell(1), "c": cell(1), "v": cell("1.5"),
                                         "n": cell("old")}))  # fmt: skip
    fresh = _configured_worker(dec, pg_dsn)  # without `n` in its configuration
    assert "n" in fresh.tables["t.ks.t"].target.schema.known
    _delete_then_write(fresh)
    assert dec.rows("SELECT p, c, v::text, n FROM {s}.t") == [(1, 1, "3.5", None)]


def test_a_running_worker_behind_the_schema_is_fenced_and_catches_up(
    dec: Rig, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers of one table: the second built its writer before the first added a column
    by schema evolution. Its next write must hit the schema-version fence (write.py
    `SchemaBehind`), learn the column from its comment (`BatchApplier.catch_up`) and then merge
    with it: the delete at 2 erases `n` (written at 1) instead of leaving it in place."""
    behind = _configured_worker(dec, pg_dsn)
    new_columns_are(monkeypatch, {"n": "text"})
    dec.run(envelope("i", 1, "ks", "t", {"p": cell(1), "c": cell(1), "v": cell("1.5"),
                                         "n": cell("old")}))  # fmt: skip
    assert "n" not in behind.tables["t.ks.t"].target.schema.known
    _delete_then_write(behind)
    assert dec.rows("SELECT p, c, v::text, n FROM {s}.t") == [(1, 1, "3.5", None)]
    assert "n" in behind.tables["t.ks.t"].target.schema.known
    assert dec.sink.letters == []
