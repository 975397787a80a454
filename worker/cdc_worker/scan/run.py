"""One slice of a verify, repair or backfill, resumable through `<schema>._cdc_scan_checkpoints`.

The slice's sub-ranges are processed in token order and the checkpoint row
(kind, table, slice i, of n) moves forward after each, with the counters, so a
restarted Job pod resumes at the first unfinished sub-range. A checkpoint is
only resumed for the same plan (the same sub-ranges): a changed ring or
`--subranges` starts over. Differences held back by the in-flight rule are
re-checked at the end of the slice, after waiting until they are older than
the lag (at most `recheck_wait` seconds); those still too new are reported as
`rowsInFlight`, not as differing.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable, Generator, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import psycopg
import structlog

from cdc_worker.config import TableConfig, WorkerConfig
from cdc_worker.connect import pg_connect
from cdc_worker.scan import repair as R
from cdc_worker.scan.compare import Comparer, Diff
from cdc_worker.scan.digest import Digest
from cdc_worker.scan.pgside import CHECKPOINTS_DDL, Conn, PgSide
from cdc_worker.scan.reader import Reader, connect, ring_tokens
from cdc_worker.scan.ring import TokenRange, plan, slice_of
from cdc_worker.sources import resolve_schema
from cdc_worker.tables import prepare
from cdc_worker.target import DeleteMode, Target, qi

log = structlog.get_logger("cdc_worker.scan")
T = TypeVar("T")
R_ = TypeVar("R_", bound=Sized)  # a range's rows, as a Reader stream yields them


@dataclass(frozen=True, slots=True)
class ScanOptions:
    kind: str  # verify | repair | backfill
    table: str | None = None  # keyspace.table or topic; None: the only table of the config
    consistency: str = "LOCAL_QUORUM"
    rows_per_second: float = 0
    slice_index: int = 0
    slice_count: int = 1
    subranges: int = 1024
    lag_seconds: float = 30.0
    recheck_wait_seconds: float = 60.0
    leaf_rows: int = 64
    fetch_size: int = 1000
    batch_rows: int = 5000  # a verify chunk's rows
    # A backfill chunk's rows, one transaction each: a chunk costs PostgreSQL about 100 ms
    # besides its rows (a dozen statements, each a round trip that waits for the GIL); at
    # 20,000 rows instead of 5,000 a backfill of 1M rows took 9 % less time (docs/scan.md).
    backfill_rows: int = 20000
    resume: bool = True
    contact_points: tuple[str, ...] = ()


@dataclass(slots=True)
class ScanResult:
    kind: str
    table: str
    slice: str
    rowsChecked: int = 0
    rowsDiffering: int = 0
    rowsRepaired: int = 0
    rowsInFlight: int = 0
    rangesDone: int = 0
    ranges: int = 0
    duration: float = 0.0
    progress: float = 0.0
    differences: list[dict[str, Any]] = field(default_factory=list)
    # Where the time went (seconds, wall clock): `readWait` this thread waiting for Cassandra's
    # rows (the reader thread), `python` this thread's own work (canonical rows and digests, or
    # changes, coalesce and COPY text), `postgresWait` this thread waiting for PostgreSQL's
    # thread, `postgres` that thread's time in PostgreSQL (overlapping the others).
    timings: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def pick_table(cfg: WorkerConfig, name: str | None) -> TableConfig:
    if name is None:
        if len(cfg.tables) != 1:
            raise ValueError("the config has several tables: choose one with --table ks.table")
        return cfg.tables[0]
    for t in cfg.tables:
        if name in (t.topic, f"{t.source.keyspace}.{t.source.table}"):
            return t
    raise ValueError(f"--table {name}: not in the config")


def target_for(cfg: WorkerConfig, tc: TableConfig) -> Target:
    cols = tc.columns
    return Target(
        resolve_schema(tc, cfg.cassandra), tc.target.schema_ or cfg.postgres.schema_,
        tc.target.table or tc.source.table, DeleteMode(tc.delete_mode),
        frozenset(cols.include) if cols.include is not None else None,
        frozenset(cols.exclude), tuple(cols.rename.items()),
    )  # fmt: skip


def _describe(d: Diff) -> dict[str, Any]:
    what = "differs"
    if d.pg is None:
        what = "missing_in_postgres"
    elif d.cass is None:
        what = "absent_in_cassandra"
    return {"token": d.token, "key": d.key_text, "kind": what, "columns": d.columns}


class Scan:
    def __init__(self, cfg: WorkerConfig, opts: ScanOptions, env: dict[str, str]) -> None:
        if cfg.cassandra is None:
            raise ValueError("the worker config needs a `cassandra` section to scan")
        self.cfg, self.opts, self.env = cfg, opts, env
        tc = pick_table(cfg, opts.table)
        self.target = target_for(cfg, tc)
        self.conn: Conn = pg_connect(cfg, env)
        self.writer = prepare(self.conn, self.target, create=tc.create_table)
        self.target = self.writer.t  # with columns schema evolution added
        self.pg = PgSide(self.target, self.writer.attnums)
        self.pg.ensure(self.conn)
        self.cluster = connect(cfg.cassandra, env, opts.contact_points)
        self.session = self.cluster.connect()
        schema = self.target.schema
        self.reader = Reader(self.session, schema, schema.values, opts.consistency,
                             opts.fetch_size, opts.rows_per_second)  # fmt: skip
        self.cmp = Comparer(self.target, self.pg, opts.leaf_rows, int(opts.lag_seconds * 1e6))
        name = f"{schema.keyspace}.{schema.table}"
        self.result = ScanResult(opts.kind, name, f"{opts.slice_index}/{opts.slice_count}")

    def close(self) -> None:
        self.cluster.shutdown()
        self.conn.close()

    # -- checkpoints ----------------------------------------------------------------------------
    def _ck_key(self) -> tuple[str, str, int, int]:
        o = self.opts
        return (o.kind, self.target.fq, o.slice_index, o.slice_count)

    def _ck_load(self, plan_id: str, ranges: int) -> int:
        ck = f"{qi(self.target.pg_schema)}._cdc_scan_checkpoints"
        with self.conn.transaction():
            # The slices of one Job start together and would race on CREATE … IF NOT EXISTS (a
            # unique violation in the catalog, seen with two): the workers' DDL lock (offsets.py).
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc_worker.ddl'))")
            self.conn.execute(CHECKPOINTS_DDL.format(schema=qi(self.target.pg_schema)))
            row = self.conn.execute(
                f"SELECT plan, next_range, done, rows_checked, rows_differing, rows_repaired, "
                f"rows_in_flight FROM {ck} WHERE kind = %s AND table_name = %s "
                "AND slice_index = %s AND slice_count = %s",
                self._ck_key(),
            ).fetchone()
            if row is not None and self.opts.resume and row[0] == plan_id and not row[2]:
                r = self.result
                r.rowsChecked, r.rowsDiffering, r.rowsRepaired, r.rowsInFlight = map(int, row[3:])
                return int(row[1])
            self.conn.execute(
                f"INSERT INTO {ck} (kind, table_name, slice_index, slice_count, plan, ranges) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, table_name, slice_index, "
                "slice_count) DO UPDATE SET plan = EXCLUDED.plan, ranges = EXCLUDED.ranges, "
                "next_range = 0, rows_checked = 0, rows_differing = 0, rows_repaired = 0, "
                "rows_in_flight = 0, done = false, started_at = now(), updated_at = now()",
                (*self._ck_key(), plan_id, ranges),
            )
        return 0

    def _ck_args(self, next_range: int, done: bool = False) -> tuple[str, tuple[Any, ...]]:
        r = self.result
        return (
            f"UPDATE {qi(self.target.pg_schema)}._cdc_scan_checkpoints SET next_range = %s, "
            "rows_checked = %s, rows_differing = %s, rows_repaired = %s, rows_in_flight = %s, "
            "done = %s, updated_at = now() WHERE kind = %s AND table_name = %s "
            "AND slice_index = %s AND slice_count = %s",
            (next_range, r.rowsChecked, r.rowsDiffering, r.rowsRepaired, r.rowsInFlight,
             done, *self._ck_key()),
        )  # fmt: skip

    def _ck_save(self, next_range: int, done: bool = False) -> None:
        with self.conn.transaction():
            self.conn.execute(*self._ck_args(next_range, done))

    # -- the scan -------------------------------------------------------------------------------
    def run(self) -> ScanResult:
        t0 = time.monotonic()
        o, res = self.opts, self.result
        ring = plan(ring_tokens(self.cluster), o.subranges)
        ranges = slice_of(ring, o.slice_index, o.slice_count)
        plan_id = hashlib.sha1(
            repr([(r.start, r.end) for r in ranges]).encode(), usedforsecurity=False
        ).hexdigest()
        start = self._ck_load(plan_id, len(ranges))
        res.ranges = len(ranges)
        res.rangesDone = start
        # One thread beside this one does PostgreSQL's share (a backfill chunk's merge, a verify
        # chunk's digests) while this one prepares the next chunk and the reader thread reads
        # ahead: Cassandra, PostgreSQL and the Python work overlap instead of taking turns.
        with _quiet_gc(), ThreadPoolExecutor(1, thread_name_prefix="scan-pg") as pool:
            if o.kind == "backfill":
                self._backfill(pool, ranges, start)
            else:
                pending = self._verify(pool, ranges, start)
                if pending:
                    self._recheck(pending)
        res.duration = round(time.monotonic() - t0, 3)
        res.timings = {k: round(v, 3) for k, v in res.timings.items()}
        res.progress = 1.0 if not ranges else round(res.rangesDone / len(ranges), 4)
        self._ck_save(len(ranges), done=True)
        return res

    def _chunks(
        self, stream: Generator[tuple[TokenRange, R_], None, None], start: int, size: int
    ) -> Iterator[list[tuple[int, TokenRange, R_]]]:
        """The slice's ranges from `start` with their rows (a `Reader` stream), in chunks of
        contiguous ranges holding about `size` rows (at most 512 ranges)."""
        chunk: list[tuple[int, TokenRange, R_]] = []
        n = 0
        idx = start
        try:
            while True:
                t = time.perf_counter()
                got = next(stream, None)
                self._took("readWait", t)
                if got is None:
                    break
                r, rows = got
                if chunk and chunk[-1][1].end != r.start:
                    yield chunk
                    chunk, n = [], 0
                chunk.append((idx, r, rows))
                n += len(rows)
                if n >= size or len(chunk) >= 512:
                    yield chunk
                    chunk, n = [], 0
                    gc.collect()  # see _quiet_gc
                idx += 1
            if chunk:
                yield chunk
        finally:
            stream.close()

    def _backfill(self, pool: ThreadPoolExecutor, ranges: list[TokenRange], start: int) -> None:
        res = self.result
        conv = R.RowConverter(self.target.schema)
        writing: Future[int] | None = None
        stream = self.reader.read_ranges(ranges[start:])
        for chunk in self._chunks(stream, start, self.opts.backfill_rows):
            t = time.perf_counter()
            rows = [x for _, _, rs in chunk for x in rs]
            prepared = R.prepare_rows(conv, self.writer, rows)
            t = self._took("python", t)
            if writing is not None:
                writing.result()  # one chunk in PostgreSQL at a time, in order
            self._took("postgresWait", t)
            res.rowsChecked += len(rows)
            res.rowsRepaired += len(rows)
            res.rangesDone = chunk[-1][0] + 1
            ck = self._ck_args(res.rangesDone)  # the counters as of this chunk

            def also(cur: Any, ck: tuple[str, tuple[Any, ...]] = ck) -> None:
                cur.execute(*ck)

            writing = pool.submit(
                self._timed, R.write_prepared, self.conn, self.writer, prepared,
                int(time.time() * 1e6), also, res.timings,
            )  # fmt: skip
        if writing is not None:
            t = time.perf_counter()
            writing.result()
            self._took("postgresWait", t)

    def _verify(self, pool: ThreadPoolExecutor, ranges: list[TokenRange], start: int) -> list[Diff]:
        res = self.result
        pending: list[Diff] = []
        # Digests compare values only, so the ranges are read without WRITETIME()/TTL() (what
        # Cassandra returns now is what PostgreSQL must hold now); only the rows of a range that
        # differs are read again in full, for the in-flight rule and for repair.
        stream = self.reader.read_value_ranges(ranges[start:])
        names = self.reader.value_names
        for chunk in self._chunks(stream, start, self.opts.batch_rows):
            specs = [(r, rows.read_us) for _, r, rows in chunk]
            digests = pool.submit(self._timed, self._pg_digests, specs)  # PostgreSQL works ...
            t = time.perf_counter()
            crows = [self.cmp.canon_values(rows, names) for _, _, rows in chunk]
            t = self._took("python", t)
            pg_ds = digests.result()  # ... on the digests of the same ranges meanwhile
            self._took("postgresWait", t)
            for (_, r, rows), (_, now), cr, d in zip(chunk, specs, crows, pg_ds, strict=True):
                res.rowsChecked += len(rows)
                diffs = self.cmp.compare_canon(self.conn, r, cr, now, d)
                if diffs:
                    diffs, now = self._in_full(r, diffs)
                self._count([x for x in diffs if not self.cmp.in_flight(x, now)])
                for x in diffs:
                    if self.cmp.in_flight(x, now):
                        x.seen = now
                        pending.append(x)
            res.rangesDone = chunk[-1][0] + 1
            self._ck_save(res.rangesDone)
        return pending

    def _in_full(self, r: TokenRange, diffs: list[Diff]) -> tuple[list[Diff], int]:
        """The differences a values-only read found, compared again from a full read (write
        times and expiries) of their rows, or of the whole range when they are many; with the
        time of that read."""
        now = int(time.time() * 1e6)
        if len(diffs) > self.opts.leaf_rows:
            rows = self.reader.read(r)
            now = min((x.read_us for x in rows), default=now)
            return self.cmp.compare(self.conn, r, rows, now), now
        return self.cmp.recheck(self.conn, self.reader, diffs, now), now

    def _took(self, what: str, since: float) -> float:
        now = time.perf_counter()
        tm = self.result.timings
        tm[what] = tm.get(what, 0.0) + now - since
        return now

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._took("postgres", t)

    def _pg_digests(self, specs: list[tuple[TokenRange, int]]) -> list[Digest]:
        self.pg.fill_tokens(self.conn)
        self.cmp.digest_queries += 1
        return self.pg.digests(self.conn, specs)

    def _count(self, diffs: list[Diff]) -> None:
        res = self.result
        res.rowsDiffering += len(diffs)
        res.differences += [_describe(d) for d in diffs[: max(0, 100 - len(res.differences))]]
        if diffs and self.opts.kind == "repair":
            res.rowsRepaired += R.repair(
                self.conn, self.writer, self.pg, diffs, int(time.time() * 1e6)
            )

    def _recheck(self, pending: list[Diff]) -> None:
        lag_us = self.cmp.lag_us
        ready_at = (max(max(d.newest, d.seen) for d in pending) + lag_us) / 1e6
        time.sleep(max(0.0, min(ready_at - time.time(), self.opts.recheck_wait_seconds)))
        now_us = int(time.time() * 1e6)
        self.pg.fill_tokens(self.conn)
        first = {d.key_text: d for d in pending if self.cmp.deletion(d)}
        still = self.cmp.recheck(self.conn, self.reader, pending, now_us)
        settled = [d for d in still if not self.cmp.in_flight(d, now_us, first.get(d.key_text))]
        self.result.rowsInFlight += len(still) - len(settled)
        self._count(settled)
        log.info("recheck", pending=len(pending), differing=len(settled))


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """The cyclic garbage collector out of the hot loop.

    A scan allocates millions of short-lived, acyclic objects (rows, cells, changes: freed
    by reference counting) while holding many live ones (pages read ahead, a chunk in
    PostgreSQL); the automatic collections keep re-traversing the live ones and cost up to
    half of the Python time (measured: changes + coalesce 2.3x faster without). So the
    objects from before the scan are frozen out of collection, automatic collection is off,
    and `_chunks` collects once per chunk instead: a full collection, as the driver's
    finished ResponseFutures are cycles that hold their page of rows (a young-generation
    collection promoted those still in flight, and the rows stayed until the end: 700 MiB
    at 1M rows), and the objects a full collection traverses here are only the chunk's.
    """
    was = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()


def run_scan(cfg: WorkerConfig, opts: ScanOptions, env: dict[str, str]) -> ScanResult:
    scan = Scan(cfg, opts, env)
    try:
        return scan.run()
    except psycopg.Error:
        raise
    finally:
        scan.close()
