"""One batch, end to end: decode → coalesce → dead-letter → write + offsets in one transaction.

Decoding failures are dead-lettered with their reason and the batch goes on. A
data error PostgreSQL raises for a coalesced batch (a value it rejects) is
isolated by re-applying that batch event by event in savepoints, so only the bad
events are dead-lettered. Connection failures raise `Transient`; the caller
retries the same decoded batch with backoff, and nothing is committed twice
because offsets and rows commit together.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
import structlog

from cdc_worker import cassandra_client
from cdc_worker.coalesce import Coalesced, coalesce, column_types
from cdc_worker.config import CassandraConfig, TableConfig
from cdc_worker.decode import Change, DecodeError, Decoder, Kind, UnknownColumns, decode
from cdc_worker.dlq import DeadLetter, DeadLetterSink
from cdc_worker.offsets import OffsetStore
from cdc_worker.reread import Rereader
from cdc_worker.sources import NotInSource, SchemaPending, confirm_new_columns
from cdc_worker.tables import IncompatibleTable, prepare
from cdc_worker.target import Target
from cdc_worker.write import SchemaBehind, TableWriter

log = structlog.get_logger("cdc_worker.apply")

# What PostgreSQL raises for a value or key it will not store: SQLSTATE classes 22 and 23 (psycopg
# maps each code to its own subclass of DataError/IntegrityError, not of DataException) and 54
# (e.g. a key too large for the index), which psycopg files under OperationalError.
REJECTED = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded)

_OPS = {Kind.WRITE: "write", Kind.ROW_DELETE: "delete", Kind.PARTITION_DELETE: "partition_delete",
        Kind.RANGE_DELETE: "range_delete"}  # fmt: skip


class Message(Protocol):
    """What the batch needs of a Kafka message (confluent_kafka.Message satisfies it)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


class Transient(Exception):
    """PostgreSQL or Kafka is unreachable; retry the batch later."""


@dataclass(slots=True)
class TableRuntime:
    cfg: TableConfig
    target: Target
    writer: TableWriter
    version: int = 0  # bumps when the schema evolves: staging tables must be rebuilt

    @property
    def name(self) -> str:
        return f"{self.target.schema.keyspace}.{self.target.schema.table}"


@dataclass(slots=True)
class Decoded:
    """A batch after decoding: changes per topic, dead letters, and offsets to store."""

    changes: dict[str, list[tuple[Message, Change]]] = field(default_factory=dict)
    # Per topic, each distinct change once: a replica copy shares its first sighting's object.
    distinct: dict[str, list[Change]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    ops: Counter[tuple[str, str]] = field(default_factory=Counter)
    newest_ts: dict[str, int] = field(default_factory=dict)
    consumed: Counter[str] = field(default_factory=Counter)
    prepared: dict[str, tuple[TableWriter, Coalesced, str]] | None = None  # per topic
    reread: dict[str, list[Change]] = field(default_factory=dict)  # per topic (reread.py)


@dataclass(slots=True)
class _Tally:
    """One topic's share of a batch while it is decoded."""

    rt: TableRuntime
    name: str
    decoder: Decoder
    consumed: int = 0
    items: list[tuple[Message, Change]] = field(default_factory=list)
    distinct: list[Change] = field(default_factory=list)
    kinds: list[int] = field(default_factory=lambda: [0] * len(Kind))
    newest: int = 0


@dataclass(slots=True)
class Outcome:
    events: int
    applied: int
    dead_lettered: int
    rows_live: int
    rows_dead: int
    newest_ts: dict[str, int]
    applied_by_table: Counter[str]


def _letter(m: Message, table: str, e: BaseException) -> DeadLetter:
    return DeadLetter(
        m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(), m.value(),
        type(e).__name__, str(e), table,
    )  # fmt: skip


def _lock_order(
    prepared: Iterable[tuple[str, tuple[TableWriter, Coalesced, str]]],
) -> list[tuple[str, tuple[TableWriter, Coalesced, str]]]:
    """The tables of one transaction in the order every writer takes their advisory locks:
    ascending lock key. Each merge locks its table until the transaction ends, so two workers
    whose batches hold the same tables in a different order (ev then kv, kv then ev) deadlocked;
    PostgreSQL aborted one every time and its retries backed off to 30 s (found by the chaos
    run, issue #15.5: three workers, two tables)."""
    return sorted(prepared, key=lambda item: item[1][0].t.lock_key)


class BatchApplier:
    def __init__(
        self,
        tables: dict[str, TableRuntime],
        offsets: OffsetStore,
        dlq: DeadLetterSink,
        cassandra: CassandraConfig | None,
        connect: Callable[[], psycopg.Connection[tuple[Any, ...]]],
    ) -> None:
        self.tables = tables
        self.offsets = offsets
        self.dlq = dlq
        self.cassandra = cassandra
        self.connect = connect
        # Two connections: `conn` writes batches (possibly from the write thread); `control`
        # serves the consumer's offset look-ups, schema evolution and the sweeper meanwhile.
        self.conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.control: psycopg.Connection[tuple[Any, ...]] | None = None
        self._staged: dict[tuple[int, str], int] = {}
        # Schema changes of a table (from decoding on the loop, or from the fence on the write
        # and sweep threads) replace its writer one at a time.
        self.schema_lock = threading.RLock()
        self._cassandra: Any = None  # a driver Cluster, for `reread` tables only
        self._rereaders: dict[str, tuple[int, Rereader]] = {}

    # -- connections ------------------------------------------------------------------------
    def _open(self, old: psycopg.Connection[tuple[Any, ...]] | None) -> Any:
        if old is not None and not old.closed and not old.broken:
            return old
        try:
            return self.connect()
        except psycopg.OperationalError as e:
            raise Transient(f"PostgreSQL unreachable: {e.sqlstate or type(e).__name__}") from e

    def connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        self.conn = self._open(self.conn)
        assert self.conn is not None
        return self.conn

    def control_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        self.control = self._open(self.control)
        assert self.control is not None
        return self.control

    def ensure_staging(self, conn: psycopg.Connection[tuple[Any, ...]], topic: str) -> None:
        """(Re)create a table's temporary staging tables on this connection when needed."""
        rt = self.tables[topic]
        key = (id(conn), topic)
        if self._staged.get(key) == rt.version:
            return
        with conn.transaction():
            for stmt in rt.writer.temp_ddl:
                conn.execute(stmt)
        self._staged[key] = rt.version

    # -- decode -----------------------------------------------------------------------------
    def decode(self, msgs: Sequence[Message]) -> Decoded:
        out = Decoded()
        next_offsets = out.next_offsets
        tallies: dict[str, _Tally] = {}
        for m in msgs:
            topic, part, off = m.topic() or "", m.partition() or 0, m.offset() or 0
            tp = (topic, part)
            if off + 1 > next_offsets.get(tp, -1):
                next_offsets[tp] = off + 1
            tally = tallies.get(topic)
            if tally is None:
                rt = self.tables.get(topic)
                if rt is None:
                    why = LookupError(f"no table replicates topic {topic}")
                    out.dead.append(_letter(m, "", why))
                    continue
                tally = tallies[topic] = _Tally(rt, rt.name, Decoder(rt.target.schema))
            tally.consumed += 1
            rt, dec = tally.rt, tally.decoder
            if dec.schema is not rt.target.schema:  # evolved during this batch
                dec = tally.decoder = Decoder(rt.target.schema)
            try:
                try:
                    ch, fresh = dec.decode(m.value())
                except UnknownColumns as e:
                    ch, fresh = self._evolve_and_decode(rt, m, e), True
            except Transient:
                raise
            except Exception as e:  # any per-event failure is dead-lettered with its reason
                out.dead.append(_letter(m, tally.name, e))
                continue
            tally.items.append((m, ch))
            tally.kinds[ch.kind] += 1
            if fresh:
                tally.distinct.append(ch)
                if ch.ts > tally.newest:
                    tally.newest = ch.ts
        for topic, tally in tallies.items():
            name = tally.name
            out.consumed[name] += tally.consumed
            if tally.items:
                out.changes[topic], out.distinct[topic] = tally.items, tally.distinct
            for kind, n in enumerate(tally.kinds):
                if n:
                    out.ops[(name, _OPS[Kind(kind)])] += n
            if tally.newest > out.newest_ts.get(name, 0):
                out.newest_ts[name] = tally.newest
        self._reread(out)
        return out

    # -- reread -----------------------------------------------------------------------------
    def _rereader(self, topic: str) -> Rereader | None:
        rt = self.tables[topic]
        cfg = rt.cfg.reread
        if cfg is None or self.cassandra is None:
            return None
        cached = self._rereaders.get(topic)
        if cached is not None and cached[0] == rt.version:
            return cached[1]
        if self._cassandra is None:
            self._cassandra = cassandra_client.cluster(self.cassandra).connect()
        rr = Rereader(self._cassandra, rt.target.schema, cfg.consistency, cfg.rows_per_second)
        self._rereaders[topic] = (rt.version, rr)
        return rr

    def reread_columns(self, topic: str) -> frozenset[str]:
        cached = self._rereaders.get(topic)
        return cached[1].names if cached is not None else frozenset()

    def _reread(self, d: Decoded) -> None:
        """For `reread` tables: the streamed collection deltas out, Cassandra's values in."""
        for topic in d.changes:
            try:
                rr = self._rereader(topic)
                if rr is None or not rr.names:
                    continue
                d.reread[topic] = rr.read(rr.strip(d.distinct[topic]))
            except Exception as e:  # the driver's errors: wait for Cassandra, lose nothing
                raise Transient(f"Cassandra unavailable for reread: {type(e).__name__}") from e

    def _evolve_and_decode(self, rt: TableRuntime, m: Message, e: UnknownColumns) -> Change:
        """The event carries columns the schema lacks: learn them (sources.py), decode again."""
        self._evolve(rt, m.value(), e.columns)
        try:
            return decode(rt.target.schema, m.value())
        except UnknownColumns as again:
            raise DecodeError(str(again)) from None

    def _evolve(self, rt: TableRuntime, raw: bytes | None, columns: dict[str, Any]) -> None:
        with self.schema_lock:
            self._evolve_locked(rt, columns)

    def catch_up(self, topic: str, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """The fence found columns another worker added (write.py `SchemaBehind`): learn them
        from their comments (source name and Cassandra's type, written by the worker that
        confirmed them with Cassandra) and rebuild the table's writer on `conn`. Columns added
        by hand (no such comment) are only taken note of, so the fence passes again."""
        with self.schema_lock:
            rt = self.tables[topic]
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(rt.writer.newer_columns)
                found = cur.fetchall()
            if not found:
                return  # another thread caught up meanwhile
            try:
                writer = prepare(conn, rt.target, create=rt.cfg.create_table)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                raise Transient(str(e)) from e
            known = rt.target.schema.known
            added = {c.name: str(c.cql) for c in writer.t.schema.columns if c.name not in known}
            target = writer.t
            rt.writer, rt.target = writer, target
            rt.version += 1
            self._staged[(id(conn), topic)] = rt.version
            log.info("schema_caught_up", table=rt.name, added=added)

    def _evolve_locked(self, rt: TableRuntime, columns: dict[str, Any]) -> None:
        schema = rt.target.schema
        try:
            types = confirm_new_columns(columns, self.cassandra, schema.keyspace, schema.table)
        except SchemaPending as e:
            raise Transient(str(e)) from e
        except NotInSource as e:
            raise DecodeError(str(e)) from e
        for name, cql in types.items():
            schema = schema.with_column(name, cql)
        target = rt.target.with_schema(schema)
        conn = self.control_connection()
        try:
            rt.writer = prepare(conn, target, create=rt.cfg.create_table)
            target = rt.writer.t  # with any columns other workers added meanwhile
        except REJECTED as e:  # e.g. a name PostgreSQL refuses: this event's problem
            conn.rollback()
            raise DecodeError(f"cannot add columns {sorted(types)}: {e}") from e
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            raise Transient(str(e)) from e
        except (IncompatibleTable, psycopg.Error) as e:
            conn.rollback()
            raise DecodeError(f"cannot add columns {sorted(types)}: {e}") from e
        rt.target = target
        rt.version += 1
        self._staged[(id(conn), next(t for t, r in self.tables.items() if r is rt))] = rt.version
        log.info("schema_evolved", table=rt.name, added=types)

    # -- coalesce ---------------------------------------------------------------------------
    def prepare(self, d: Decoded) -> None:
        """Coalesce per table and render the COPY payloads (CPU work, on the caller's thread)."""
        out: dict[str, tuple[TableWriter, Coalesced, str]] = {}
        for topic in d.changes:
            rt = self.tables[topic]
            # Distinct changes only: a replica copy adds nothing (coalescing is idempotent).
            batch = coalesce(rt.target.schema, d.distinct[topic] + d.reread.get(topic, []))
            # The writer is pinned: a schema change while this batch is in flight builds a new
            # one, whose staging table is a superset of this one's.
            out[topic] = (rt.writer, batch, rt.writer.render(batch))
        d.prepared = out

    # -- write ------------------------------------------------------------------------------
    def write(self, d: Decoded, now_us: int | None = None) -> Outcome:
        """Dead-letter, then write everything and the offsets in one transaction."""
        try:
            self.dlq.send(d.dead)
        except (ConnectionError, BufferError) as e:
            raise Transient(str(e)) from e
        now = now_us if now_us is not None else int(time.time() * 1_000_000)
        if d.prepared is None:
            self.prepare(d)
        assert d.prepared is not None
        conn = self.connection()
        live = dead = 0
        extra_dead: list[DeadLetter] = []
        try:
            while True:
                try:
                    live, dead, extra_dead = self._write_once(conn, d, now)
                    break
                except SchemaBehind:
                    # Another worker added columns: rebuild the writers, re-render, write again
                    # (the transaction was rolled back before anything was touched).
                    for topic in d.prepared:
                        if self.tables[topic].writer.max_attnum == d.prepared[topic][0].max_attnum:
                            self.catch_up(topic, conn)
                    self.prepare(d)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            raise Transient(f"PostgreSQL write failed: {type(e).__name__}") from e
        applied = sum(len(v) for v in d.changes.values()) - len(extra_dead)
        by_table: Counter[str] = Counter()
        for topic, items in d.changes.items():
            by_table[self.tables[topic].name] += len(items)
        for letter in extra_dead:
            by_table[letter.table] -= 1
        return Outcome(
            sum(d.consumed.values()) + sum(1 for x in d.dead if not x.table), applied,
            len(d.dead) + len(extra_dead), live, dead, d.newest_ts, by_table,
        )  # fmt: skip

    def _write_once(
        self, conn: psycopg.Connection[tuple[Any, ...]], d: Decoded, now: int
    ) -> tuple[int, int, list[DeadLetter]]:
        assert d.prepared is not None
        live = dead = 0
        try:
            for topic in d.prepared:
                self.ensure_staging(conn, topic)
            with conn.transaction(), conn.cursor() as cur:
                for topic, (writer, batch, rendered) in _lock_order(d.prepared.items()):
                    r = writer.write(cur, batch, now, rendered, self.reread_columns(topic))
                    live, dead = live + r.live, dead + r.dead
                self.offsets.store(cur, d.next_offsets)
        except REJECTED as e:
            log.warning("batch_data_error_isolating", error=str(e).splitlines()[0])
            extra_dead, live, dead = self._isolate(conn, d, now)
            return live, dead, extra_dead
        return live, dead, []

    def _isolate(
        self, conn: psycopg.Connection[tuple[Any, ...]], d: Decoded, now: int
    ) -> tuple[list[DeadLetter], int, int]:
        """Apply event by event in savepoints; dead-letter the ones PostgreSQL rejects."""
        bad: list[DeadLetter] = []
        live = dead = 0
        with conn.transaction(), conn.cursor() as cur:
            for topic in sorted(d.changes, key=lambda t: self.tables[t].target.lock_key):
                items, rt = d.changes[topic], self.tables[topic]
                for m, ch in items:
                    one = Coalesced(column_types(rt.target.schema))
                    one.add(ch, len(rt.target.schema.partition_key))
                    one.apply_tombstones(rt.target.schema, one.partition_dels, one.range_dels)
                    try:
                        with conn.transaction():
                            rt.writer.clear(cur)
                            r = rt.writer.write(cur, one, now)
                            live, dead = live + r.live, dead + r.dead
                    except REJECTED as e:
                        bad.append(_letter(m, rt.name, e))
                reread = d.reread.get(topic)
                if reread:  # what Cassandra holds now for the rows of these events
                    one = coalesce(rt.target.schema, reread)
                    with conn.transaction():
                        rt.writer.clear(cur)
                        r = rt.writer.write(cur, one, now, reread=self.reread_columns(topic))
                        live, dead = live + r.live, dead + r.dead
            try:
                self.dlq.send(bad)
            except (ConnectionError, BufferError) as e:
                raise Transient(str(e)) from e
            self.offsets.store(cur, d.next_offsets)
        return bad, live, dead
