"""End-to-end latency of the chaos run: marker rows written to Cassandra, polled in PostgreSQL.

A marker is a `kv` row with a negative id (the load uses ids >= 0) written at LOCAL_QUORUM every
`interval` s; its end-to-end latency is the time from the CQL acknowledgement to the moment a poll
of PostgreSQL (every 50 ms) first sees the row. Markers hash onto every partition of the topic, so
a partition that stops being applied shows up as markers that are late. Recovery after a fault is
read from them (`recovery`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from cassandra import ConsistencyLevel
from cassandra.cluster import Session


@dataclass
class Marker:
    seq: int
    acked: float  # wall time of the CQL acknowledgement
    visible: float | None = None

    @property
    def e2e(self) -> float | None:
        return None if self.visible is None else self.visible - self.acked


@dataclass
class Markers:
    session: Session
    keyspace: str
    pg_dsn: str
    pg_table: str  # "schema".kv
    interval: float = 0.1
    markers: list[Marker] = field(default_factory=list)
    failed_writes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _no_more: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Markers:
        for target in (self._write, self._poll):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop_writing(self) -> None:
        """No more markers (the load stopped): the poller goes on until `stop`."""
        self._no_more.set()

    def stop(self) -> None:
        self._no_more.set()
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _write(self) -> None:
        stmt = self.session.prepare(f"INSERT INTO {self.keyspace}.kv (id, v) VALUES (?, ?)")
        stmt.consistency_level = ConsistencyLevel.LOCAL_QUORUM
        seq = 0
        while not self._no_more.is_set():
            seq += 1
            t0 = time.monotonic()
            try:
                self.session.execute(stmt, (-seq, f"marker {seq}"), timeout=10)
            except Exception:
                self.failed_writes += 1
            else:
                with self._lock:
                    self.markers.append(Marker(seq, time.time()))
            self._no_more.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _poll(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.pg_dsn, autocommit=True, connect_timeout=3)
                pending = self.pending()
                if pending:
                    ids = [-m.seq for m in pending]
                    try:
                        rows = conn.execute(
                            f"SELECT id FROM {self.pg_table} WHERE id = ANY(%s)", (ids,)
                        ).fetchall()
                    except psycopg.errors.UndefinedTable:
                        rows = []
                    now = time.time()
                    seen = {-r[0] for r in rows}
                    for m in pending:
                        if m.seq in seen:
                            m.visible = now
            except psycopg.OperationalError:
                conn = None
                time.sleep(0.5)
            time.sleep(0.05)

    def pending(self) -> list[Marker]:
        with self._lock:
            return [m for m in self.markers[-5000:] if m.visible is None]

    def snapshot(self) -> list[Marker]:
        with self._lock:
            return list(self.markers)


@dataclass(frozen=True)
class Recovery:
    first_applied: float | None  # fault -> first marker written after it visible (s)
    recovered: float | None  # fault -> every later marker back under the lag threshold (s)
    max_lag: float | None  # largest end-to-end latency of a marker in the window (s)
    markers: int
    lost: int  # markers acknowledged by Cassandra and never seen in PostgreSQL


def recovery(markers: list[Marker], t0: float, t_end: float, threshold: float) -> Recovery:
    """Read the effect of a fault injected at wall time t0 from the markers acknowledged in
    [t0 - threshold, t_end]: `recovered` is when the last late marker (e2e > threshold) became
    visible, or the first marker's latency when none was late."""
    window = [m for m in markers if t0 - threshold <= m.acked <= t_end]
    after = [m for m in window if m.acked >= t0 and m.visible is not None]
    first = min((m.visible for m in after if m.visible), default=None)
    lags = [m.e2e for m in window if m.e2e is not None]
    late = [m for m in window if m.e2e is not None and m.e2e > threshold]
    lost = sum(1 for m in window if m.visible is None)
    if late:
        recovered: float | None = max(m.visible for m in late if m.visible) - t0
    elif after:
        recovered = min(m.acked + (m.e2e or 0) for m in after) - t0
    else:
        recovered = None
    return Recovery(
        first_applied=None if first is None else first - t0,
        recovered=recovered,
        max_lag=max(lags, default=None),
        markers=len(window),
        lost=lost,
    )
