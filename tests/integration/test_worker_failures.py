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
        for c in (applier.conn, applier.control):
            if c is not None:
                c.close()
        conn.execute(f"DROP SCHEMA {name} CASCADE")
        conn.commit()
        conn.close()


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
