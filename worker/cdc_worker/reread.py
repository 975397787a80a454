"""`reread`: take non-frozen collections from Cassandra, not from the stream.

The connector emits a non-frozen collection as a delta: the element added, the key put, and
an element *removed* looks like one added (docs/debezium-wire-format.md). No merge of such
events can be exact. With `reread` on, the worker drops those columns from every event and,
for each row a batch touches, reads them from Cassandra (the way DataStax's CDC connector
stays exact), at a configurable consistency level, rate-limited, concurrently per batch.

How a re-read cell merges (write.py, `TableWriter.write(…, reread=…)`):
- its write time is the collection's newest element's WRITETIME (Cassandra's own time, so a
  row, range or partition tombstone newer than every element still removes it, and one older
  does not — `Cells.resolveRegular`);
- it replaces whatever PostgreSQL holds for that column, whatever that time: an element removal
  makes the newest write time *older*, and the read is newer than every earlier read of the
  same row (one partition is applied in order);
- a row Cassandra no longer has, or an empty collection, is a cell tombstone at the read time.
Limits (docs/worker.md): an element expiring by TTL leaves PostgreSQL at the row's next event
or repair; the read sees writes made at a consistency level the read level overlaps
(LOCAL_QUORUM reads for LOCAL_QUORUM writes; `ALL` reads if writes use ONE).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from ipaddress import ip_address
from typing import Any

from cdc_worker.decode import Change, Kind
from cdc_worker.scan.reader import RateLimiter
from cdc_worker.scan.values import pg_text
from cdc_worker.schema import ColumnKind, SourceColumn, TableSchema
from cdc_worker.typemap import CqlType

Key = tuple[str | None, ...]

_INTS = ("int", "bigint", "smallint", "tinyint", "varint", "counter")


def reread_columns(schema: TableSchema) -> list[SourceColumn]:
    """The columns `reread` takes from Cassandra: non-frozen collections."""
    return [
        c for c in schema.values
        if c.kind is ColumnKind.REGULAR and c.cql.is_collection and not c.cql.frozen
    ]  # fmt: skip


def key_value(t: CqlType, text: str) -> Any:
    """A primary-key value as the driver binds it, from the PG text form the decoder produced
    (typemap.to_pg_text); raises ValueError for a type a key of this form cannot have."""
    from cassandra.util import Date, Time

    n = t.name
    if n in ("text", "ascii", "varchar"):
        return text
    if n in _INTS:
        return int(text)
    if n in ("float", "double"):
        return float(text)
    if n == "decimal":
        return Decimal(text)
    if n == "boolean":
        return text == "true"
    if n in ("uuid", "timeuuid"):
        return uuid.UUID(text)
    if n == "timestamp":
        return datetime.fromisoformat(text)
    if n == "date":
        return Date(date.fromisoformat(text))
    if n == "time":
        return Time(text)
    if n == "inet":
        return str(ip_address(text))
    if n == "blob":
        return bytes.fromhex(text[2:] if text.startswith("\\x") else text)
    raise ValueError(f"reread does not support primary-key columns of type {t}")


class UnsupportedReread(Exception):
    """`reread` cannot address this table's rows (a primary-key type it cannot bind)."""


def check_keys(schema: TableSchema) -> None:
    bad = [f"{k.name} {k.cql}" for k in schema.primary_key if not _bindable(k.cql)]
    if bad:
        raise UnsupportedReread(f"reread does not support primary-key columns {bad}")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Rereader:
    """Reads one table's non-frozen collections for the rows of a batch."""

    def __init__(
        self, session: Any, schema: TableSchema, consistency: str = "LOCAL_QUORUM",
        rows_per_second: float = 0, concurrency: int = 32,
    ) -> None:  # fmt: skip
        from cassandra import ConsistencyLevel

        self.session = session
        self.schema = schema
        self.columns = reread_columns(schema)
        self.names = frozenset(c.name for c in self.columns)
        self.keys = list(schema.primary_key)
        check_keys(schema)
        sel = []
        for c in self.columns:
            n = _q(c.name)
            sel += [n, f"collection_max(WRITETIME({n}))"]
        where = " AND ".join(f"{_q(k.name)} = ?" for k in self.keys)
        cql = f"SELECT {', '.join(sel)} FROM {_q(schema.keyspace)}.{_q(schema.table)} WHERE {where}"
        self.stmt = session.prepare(cql) if self.columns else None
        if self.stmt is not None:
            self.stmt.consistency_level = getattr(ConsistencyLevel, consistency)
        self.limiter = RateLimiter(rows_per_second)
        self.concurrency = concurrency

    def strip(self, changes: Iterable[Change]) -> list[Key]:
        """Drop the re-read columns from streamed writes (their deltas are not values); the
        keys of the rows to re-read, in first-seen order."""
        keys: dict[Key, None] = {}
        for ch in changes:
            if ch.kind is not Kind.WRITE:
                continue
            for name in self.names & ch.cells.keys():
                del ch.cells[name]
            keys[ch.key] = None
        return list(keys)

    def read(self, keys: Sequence[Key]) -> list[Change]:
        """One change per row: the collections as Cassandra holds them now."""
        if self.stmt is None or not keys:
            return []
        from cassandra.concurrent import execute_concurrent_with_args

        params = [
            tuple(key_value(k.cql, str(v)) for k, v in zip(self.keys, key, strict=True))
            for key in keys
        ]
        read_us = int(time.time() * 1_000_000)
        results = execute_concurrent_with_args(
            self.session, self.stmt, params, concurrency=self.concurrency,
            raise_on_first_error=True,
        )  # fmt: skip
        out: list[Change] = []
        for key, (_ok, rows) in zip(keys, results, strict=True):
            row = rows.one() if hasattr(rows, "one") else (rows[0] if rows else None)
            out += self._changes(key, row, read_us)
        self.limiter.took(len(keys))
        return out

    def _changes(self, key: Key, row: Sequence[Any] | None, read_us: int) -> list[Change]:
        by_ts: dict[int, dict[str, tuple[str | None, int | None]]] = {}
        for i, c in enumerate(self.columns):
            value, wt = (row[2 * i], row[2 * i + 1]) if row is not None else (None, None)
            text = pg_text(c.cql, value) if value is not None else None
            ts = int(wt) if text is not None and wt is not None else read_us
            by_ts.setdefault(ts, {})[c.name] = (text, None)
        return [Change(Kind.WRITE, ts, key, cells, False, None) for ts, cells in by_ts.items()]


def _bindable(t: CqlType) -> bool:
    return t.name in (
        "text", "ascii", "varchar", *_INTS, "float", "double", "decimal", "boolean", "uuid",
        "timeuuid", "timestamp", "date", "time", "inet", "blob",
    )  # fmt: skip
