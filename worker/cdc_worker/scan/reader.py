"""Read a Cassandra table by token range: every column with its WRITETIME() and TTL().

One prepared statement per table, `token(pk) > ? AND token(pk) <= ?`, paged by
the driver (`fetch_size`), at a configurable consistency level (default
LOCAL_QUORUM: the same replicas a quorum write reached, so a verify does not
report what a single lagging replica has not got yet). A token-bucket style
limiter sleeps between pages so a scan stays under `rows_per_second`.

WRITETIME()/TTL() are allowed on every regular and static column; on a
non-frozen collection Cassandra 5.0 returns one value per element
(CASSANDRA-8877, org.apache.cassandra.cql3.selection.WritetimeOrTTLSelector with
ColumnTimestamps); the TTL list holds a null per element without TTL, which the
Python driver cannot decode (a null inside a list), so both lists are reduced
server-side with 5.0's collection_max/collection_min
(org.apache.cassandra.cql3.functions.CollectionFcts, CASSANDRA-18060), which
skip nulls. The worker keeps one timestamp per column (the stream carries the
whole column), so a collection's write time is its newest element's and its
expiry its earliest element's: the value changes at that moment. Counters have
neither and are not supported. Primary-key columns have none either, so a row
that exists only through its row marker has no readable write time.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cdc_worker.config import CassandraConfig, secret
from cdc_worker.scan.ring import TokenRange
from cdc_worker.schema import SourceColumn, TableSchema

CONSISTENCY_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                      "LOCAL_ONE")  # fmt: skip

Cell = tuple[Any, int | None, int | None]  # driver value, write time µs, expiry µs
T = TypeVar("T")


@dataclass(slots=True)
class ScanRow:
    token: int
    key: tuple[Any, ...]  # driver values, primary-key order
    cells: dict[str, Cell]  # source column -> cell (value None: no live cell)
    read_us: int  # when the page holding this row was read


@dataclass(frozen=True, slots=True)
class ValueRows:
    """A range's rows from `Reader.read_value_ranges`: the driver's tuples, (token, primary
    key..., the values of `Reader.value_names`...), as read from `read_us` on."""

    read_us: int
    rows: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.rows)


def connect(cfg: CassandraConfig, env: dict[str, str], contact_points: Sequence[str] = ()) -> Any:
    """A driver Cluster for the config's contact points (credentials from env only)."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    hosts, port = [], 9042
    for cp in contact_points or cfg.contact_points:
        host, _, p = cp.rpartition(":") if ":" in cp else (cp, "", "")
        hosts.append(host or cp)
        port = int(p) if p else port
    user, password = secret(env, "CASSANDRA_USERNAME"), secret(env, "CASSANDRA_PASSWORD")
    auth = PlainTextAuthProvider(user, password) if user and password else None
    context = None
    if cfg.tls is not None:  # as cassandra_client: encrypted when the config names a CA
        context = ssl.create_default_context(cafile=cfg.tls.ca_file)
        context.check_hostname = cfg.tls.verify_hostname
    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_datacenter))
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=60)
    return Cluster(hosts, port=port, protocol_version=5, auth_provider=auth, ssl_context=context,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile})  # fmt: skip


def ring_tokens(cluster: Any) -> list[int]:
    tm = cluster.metadata.token_map
    return [int(t.value) for t in tm.ring] if tm is not None else []


class RateLimiter:
    """Sleeps so that `rows` reported over time stay under `per_second` (0: unlimited)."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.t0 = time.monotonic()
        self.rows = 0

    def took(self, rows: int) -> None:
        self.rows += rows
        if self.per_second > 0:
            ahead = self.rows / self.per_second - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Reader:
    def __init__(
        self, session: Any, schema: TableSchema, columns: Sequence[SourceColumn],
        consistency: str = "LOCAL_QUORUM", fetch_size: int = 1000, rows_per_second: float = 0,
    ) -> None:  # fmt: skip
        from cassandra import ConsistencyLevel

        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"unknown consistency level {consistency}")
        self.session = session
        self.schema = schema
        self.columns = [c for c in columns if c.cql.name != "counter"]
        self.cl = getattr(ConsistencyLevel, consistency)
        self.fetch_size = fetch_size
        self.limiter = RateLimiter(rows_per_second)
        pk = ", ".join(_q(c.name) for c in schema.partition_key)
        sel = [f"token({pk})", *(_q(c.name) for c in schema.primary_key)]
        for c in self.columns:
            n = _q(c.name)
            if c.cql.is_collection and not c.cql.frozen:
                # Per-element lists; a TTL list holds nulls the driver cannot decode, so
                # reduce server-side (null elements are skipped by collection_min/max).
                sel += [n, f"collection_max(WRITETIME({n}))", f"collection_min(TTL({n}))"]
            else:
                sel += [n, f"WRITETIME({n})", f"TTL({n})"]
        src = f"FROM {_q(schema.keyspace)}.{_q(schema.table)}"
        base = f"SELECT {', '.join(sel)} {src}"
        in_range = f"WHERE token({pk}) > ? AND token({pk}) <= ?"
        self._range = self._prepare(f"{base} {in_range}")
        values = [*sel[: 1 + len(schema.primary_key)], *(_q(c.name) for c in self.columns)]
        self._values = self._prepare(f"SELECT {', '.join(values)} {src} {in_range}")
        where = " AND ".join(f"{_q(c.name)} = ?" for c in schema.primary_key)
        self._row = self._prepare(f"{base} WHERE {where}")
        self.nkey = len(schema.primary_key)
        self.has_clustering = bool(schema.clustering)
        self.value_names = [c.name for c in self.columns]
        self._profile = _tuple_profile(session)

    def _prepare(self, cql: str) -> Any:
        ps = self.session.prepare(cql)
        ps.consistency_level = self.cl
        ps.fetch_size = self.fetch_size
        return ps

    def read(self, r: TokenRange) -> list[ScanRow]:
        """Every row of the range, in token order (then clustering order)."""
        return list(self._rows(self._range.bind((r.start, r.end))))

    def read_keys(self, keys: Sequence[tuple[Any, ...]]) -> list[ScanRow]:
        out: list[ScanRow] = []
        for k in keys:
            out += self._rows(self._row.bind(k))
        return out

    def read_ranges(
        self, ranges: Iterable[TokenRange], window: int = 4, ahead: int = 8
    ) -> Generator[tuple[TokenRange, list[ScanRow]], None, None]:
        """`(r, self.read(r))` for each range in order, read ahead by a thread.

        The thread keeps `window` range queries in flight (Cassandra works on the
        next ranges while this one is decoded) and up to `ahead` decoded ranges
        queued, so the caller's PostgreSQL work and Python work overlap the reads.
        Closing the iterator early stops the thread.
        """
        return self._ahead(ranges, self._range, lambda rs, first: list(self._pages(rs, first)),
                           window, ahead)  # fmt: skip

    def read_value_ranges(
        self, ranges: Iterable[TokenRange], window: int = 4, ahead: int = 8
    ) -> Generator[tuple[TokenRange, ValueRows], None, None]:
        """`read_ranges` of the live values only, without WRITETIME()/TTL(): what Cassandra
        itself returns at the time of the read. That is all a digest compares, and it costs
        Cassandra and the driver a fraction of the full query; a verify re-reads only the rows
        that differ in full. The rows stay the driver's tuples (`ValueRows`): building a cell
        map per row cost as much as digesting it."""
        return self._ahead(ranges, self._values, self._value_rows, window, ahead)

    def _ahead(
        self, ranges: Iterable[TokenRange], stmt: Any, collect: Callable[[Any, int | None], T],
        window: int, ahead: int,
    ) -> Generator[tuple[TokenRange, T], None, None]:  # fmt: skip
        q: queue.Queue[Any] = queue.Queue(maxsize=max(1, ahead))
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                it = iter(ranges)
                futures: deque[tuple[TokenRange, Any, list[int]]] = deque()

                def submit() -> None:
                    r = next(it, None)
                    if r is not None:
                        arrived = [0]  # µs when the first page came (it may wait in `futures`)
                        fut = self._execute_async(stmt.bind((r.start, r.end)))
                        fut.add_callback(_stamp, arrived)
                        futures.append((r, fut, arrived))

                for _ in range(max(1, window)):
                    submit()
                while futures and not stop.is_set():
                    r, fut, arrived = futures.popleft()
                    rs = fut.result()
                    submit()
                    put((r, collect(rs, arrived[0] or None)))
                put(_END)
            except BaseException as e:  # handed to the consumer, raised there
                put(e)

        t = threading.Thread(target=produce, name="scan-reader", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            t.join(timeout=120)

    def _execute_async(self, stmt: Any) -> Any:
        if self._profile is None:
            return self.session.execute_async(stmt)
        return self.session.execute_async(stmt, execution_profile=self._profile)

    def _rows(self, stmt: Any) -> Iterator[ScanRow]:
        return self._pages(self._execute_async(stmt).result())

    def _pages(self, rs: Any, first_us: int | None = None) -> Iterator[ScanRow]:
        while True:
            now_us = first_us or int(time.time() * 1_000_000)
            first_us = None
            now_s = now_us // 1_000_000
            page = rs.current_rows
            for row in page:
                out = self._convert(row, now_us, now_s)
                if out is not None:
                    yield out
            self.limiter.took(len(page))
            if not rs.has_more_pages:
                return
            rs.fetch_next_page()

    def _value_rows(self, rs: Any, first_us: int | None) -> ValueRows:
        read_us = first_us or int(time.time() * 1_000_000)
        rows: list[tuple[Any, ...]] = []
        last_key = self.nkey  # a partition holding only static cells: no row to replicate
        while True:
            page = rs.current_rows
            if self.has_clustering:
                rows += [x for x in page if x[last_key] is not None]
            else:
                rows += page
            self.limiter.took(len(page))
            if not rs.has_more_pages:
                return ValueRows(read_us, rows)
            rs.fetch_next_page()

    def _convert(self, row: Sequence[Any], now_us: int, now_s: int) -> ScanRow | None:
        key = tuple(row[1 : 1 + self.nkey])
        if self.has_clustering and key[-1] is None:
            return None  # a partition holding only static cells: no row to replicate
        cells: dict[str, Cell] = {}
        i = 1 + self.nkey
        for name in self.value_names:
            ttl = row[i + 2]
            if ttl is None:
                cells[name] = (row[i], row[i + 1], None)
            else:
                cells[name] = (row[i], row[i + 1], (now_s + int(ttl)) * 1_000_000)
            i += 3
        return ScanRow(int(row[0]), key, cells, now_us)


_END = object()


def _stamp(_rows: Any, arrived: list[int]) -> None:
    arrived[0] = int(time.time() * 1_000_000)


def _tuple_profile(session: Any) -> Any:
    """The session's default execution profile with plain tuples as rows (the driver's
    named tuples cost a class lookup and an object per row; the scanner indexes rows)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT
    from cassandra.query import tuple_factory

    try:
        clone = session.execution_profile_clone_update
        return clone(EXEC_PROFILE_DEFAULT, row_factory=tuple_factory)
    except Exception:  # a session without execution profiles (legacy settings): its defaults
        return None
