"""Housekeeping: expire TTL'd cells, and forget tombstones after the grace period.

Expiry: rows whose `_cdc_next_exp` has passed are re-merged with no new cells,
which nulls expired cells and deletes (or soft-deletes) rows left with nothing
live; `_cdc_next_exp` is indexed, so this touches only expiring rows.
Grace: like Cassandra's gc_grace_seconds, tombstones (dead rows, partition and
range tombstones) are dropped once older than the grace period; a write older
than a forgotten tombstone that arrives after that could resurrect data, as it
could in Cassandra.

Capacity. A pass sweeps each table set-based, in chunks of `CHUNK` rows (one
transaction each, oldest expiry first), and repeats until no row of any table is
due, round-robin across tables so one table's backlog never starves another's.
There is no cap per pass: the sweeper keeps up with expiries as fast as
PostgreSQL can merge them (docs/benchmarks.md), and a backlog shows in
`cdc_worker_expired_rows_pending`.

Why a thread with its own connection (and not a time budget inside the consume
loop): a sweep pass at tens of thousands of expiries per second is mostly
PostgreSQL time; on the loop it would stop consumption for that long, and a
budget would only trade that stall for a backlog. On its own thread and
connection the pass overlaps consumption and the batch writes completely. The
only thing it shares with the writers is the table's advisory lock (write.py),
held for one chunk at a time, so a batch write waits at most one chunk's merge
(tens of milliseconds), never a whole pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from cdc_worker import metrics as M
from cdc_worker.write import SchemaBehind

if TYPE_CHECKING:
    from cdc_worker.apply import TableRuntime
    from cdc_worker.write import TableWriter

log = structlog.get_logger("cdc_worker.sweep")

PURGE_EVERY_S = 600.0
CHUNK = 5_000  # rows per sweep transaction: bounds how long the table's lock is held


@dataclass(slots=True)
class SweepStats:
    rows: int = 0  # rows re-merged by the sweeper since start
    busy_s: float = 0.0  # seconds spent in sweep transactions
    passes: int = 0


class Sweeper:
    def __init__(
        self,
        tables: Mapping[str, TableRuntime],
        connect: Callable[[], psycopg.Connection[tuple[Any, ...]]],
        grace_seconds: int,
        pipeline: str = "",
        chunk: int = CHUNK,
        catch_up: Callable[[str, psycopg.Connection[tuple[Any, ...]]], None] | None = None,
    ) -> None:
        self.tables = tables
        self.connect = connect
        self.grace = grace_seconds
        self.pipeline = pipeline
        self.chunk = chunk
        self.catch_up = catch_up
        self.last_purge = time.monotonic()
        self.stats = SweepStats()
        self.conn: psycopg.Connection[tuple[Any, ...]] | None = None
        # The writer whose temporary staging tables exist on this sweeper's connection, per
        # topic: a schema change replaces the table's writer, and its staging table with it.
        self._staged: dict[str, TableWriter] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = self.connect()
            self._staged.clear()
        return self.conn

    def _writer(self, conn: psycopg.Connection[tuple[Any, ...]], topic: str) -> TableWriter:
        writer = self.tables[topic].writer
        if self._staged.get(topic) is not writer:
            with conn.transaction():
                for stmt in writer.temp_ddl:
                    conn.execute(stmt)
            self._staged[topic] = writer
        return writer

    def run(self, now_us: int | None = None) -> int:
        """One pass: sweep every table until nothing is due; returns the rows re-merged."""
        conn = self._connection()
        fixed_now = now_us
        due = list(self.tables)
        swept = 0
        while due and not self._stop.is_set():
            for topic in list(due):
                writer = self._writer(conn, topic)
                now = fixed_now if fixed_now is not None else int(time.time() * 1_000_000)
                t0 = time.perf_counter()
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        n = writer.sweep(cur, now, self.chunk)
                except SchemaBehind:
                    # Another worker added columns: never sweep with a writer that would drop
                    # them. Rebuild it (or leave the table to the next pass) and go on.
                    if self.catch_up is None:
                        due.remove(topic)
                    else:
                        self.catch_up(topic, conn)
                    continue
                self.stats.busy_s += time.perf_counter() - t0
                self.stats.rows += n
                swept += n
                if n:
                    M.EXPIRED_ROWS_SWEPT.labels(self.pipeline, self.tables[topic].name).inc(n)
                if n < self.chunk:
                    due.remove(topic)
        for rt in self.tables.values():
            now = fixed_now if fixed_now is not None else int(time.time() * 1_000_000)
            with conn.transaction(), conn.cursor() as cur:
                pending = rt.writer.pending(cur, now)
            M.EXPIRED_ROWS_PENDING.labels(self.pipeline, rt.name).set(pending)
        if time.monotonic() - self.last_purge >= PURGE_EVERY_S:
            for rt in self.tables.values():
                with conn.transaction(), conn.cursor() as cur:
                    rt.writer.purge(cur, self.grace)
            self.last_purge = time.monotonic()
        self.stats.passes += 1
        return swept

    # -- background thread ------------------------------------------------------------------
    def start(self, interval_s: float) -> Sweeper:
        """Run a pass every `interval_s` (measured from the start of the previous pass)."""
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="cdc-sweep", daemon=True
        )
        self._thread.start()
        return self

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run()
            except Exception as e:  # a failed pass is retried at the next interval
                M.ERRORS.labels(self.pipeline, "sweep").inc()
                log.warning("sweep_failed", error=(str(e).splitlines() or [type(e).__name__])[0])
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            self._stop.wait(max(0.0, interval_s - (time.monotonic() - started)))

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.conn is not None:
            self.conn.close()
