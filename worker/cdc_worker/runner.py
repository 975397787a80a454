"""The worker's main loop: wire config to stages, then poll → apply → commit until stopped.

Transient failures (PostgreSQL or Kafka unreachable) hold the current batch and
retry it with exponential backoff (0.5 s doubling to 30 s); while failing, the
circuit is open: readiness is false, consumption is paused, and group
membership is kept alive so the partitions stay here.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from confluent_kafka import Producer
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from cdc_worker import metrics as M
from cdc_worker.apply import BatchApplier, Decoded, Outcome, TableRuntime, Transient
from cdc_worker.config import WorkerConfig
from cdc_worker.connect import kafka_settings, pg_connect, redis_client
from cdc_worker.consume import Source
from cdc_worker.dlq import DeadLetterSink
from cdc_worker.gaps import Gap, GapStore
from cdc_worker.hops import reason_code
from cdc_worker.http import Health, serve
from cdc_worker.observe import setup_tracing
from cdc_worker.offsets import OffsetStore
from cdc_worker.reread import UnsupportedReread, check_keys
from cdc_worker.sources import SchemaUnavailable, resolve_schema
from cdc_worker.sweep import Sweeper
from cdc_worker.tables import IncompatibleTable, prepare
from cdc_worker.target import DeleteMode, Target

log = structlog.get_logger("cdc_worker")


class Worker:
    def __init__(self, cfg: WorkerConfig, env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.env = dict(os.environ if env is None else env)
        self.stopping = False
        self.worker_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.health = Health()
        self.timeline = self.health.timeline
        self.timeline.mark("imported")
        self.tracer = setup_tracing("cdc-worker", cfg.pipeline, cfg.otlp_endpoint)
        structlog.contextvars.bind_contextvars(pipeline=cfg.pipeline, worker=self.worker_id)

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return pg_connect(self.cfg, self.env)

    def _setup(self) -> tuple[BatchApplier, Source, Sweeper, Any]:
        from cdc_worker.status import Status

        cfg = self.cfg
        # Redis first: a worker that cannot reach PostgreSQL or Kafka says so to the operator.
        client = redis_client(cfg, self.env, 0.5) if cfg.redis is not None else None
        status = self._status = Status(client, cfg.pipeline, self.worker_id)
        conn = self._retry("postgres_connect", self._connect)
        self.timeline.mark("postgres_connected")
        offsets = OffsetStore(cfg.postgres.schema_, cfg.kafka.group_id)
        offsets.ensure(conn)
        tables: dict[str, TableRuntime] = {}
        self._quarantined: dict[str, str] = {}
        for tc in cfg.tables:
            # A table that cannot be served (missing in Cassandra, no schema, an incompatible
            # PostgreSQL table) is quarantined: reported, its topic not consumed, and the
            # other tables replicate. A restart (any config change rolls the workers) retries.
            name = f"{tc.source.keyspace}.{tc.source.table}"
            try:
                schema = resolve_schema(tc, cfg.cassandra)
                cols = tc.columns
                target = Target(
                    schema,
                    tc.target.schema_ or cfg.postgres.schema_,
                    tc.target.table or tc.source.table,
                    DeleteMode(tc.delete_mode),
                    frozenset(cols.include) if cols.include is not None else None,
                    frozenset(cols.exclude),
                    tuple(cols.rename.items()),
                )
                if tc.reread is not None:
                    check_keys(schema)
                writer = prepare(conn, target, create=tc.create_table)
            except (SchemaUnavailable, IncompatibleTable, UnsupportedReread,
                    psycopg.errors.DataError,
                    psycopg.errors.SyntaxErrorOrAccessRuleViolation) as e:  # fmt: skip
                conn.rollback()
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                self._quarantined[name] = why
                M.QUARANTINED.labels(cfg.pipeline, name).set(1)
                log.error("table_quarantined", table=name, reason=why)
                continue
            tables[tc.topic] = TableRuntime(tc, writer.t, writer)
        conn.close()
        self.timeline.mark("tables_prepared")
        ksettings = kafka_settings(cfg, self.env)
        producer = Producer({**ksettings, "enable.idempotence": True, "linger.ms": 5})
        dlq = DeadLetterSink(producer, cfg.kafka.dead_letter_topic, cfg.pipeline)
        applier = BatchApplier(tables, offsets, dlq, cfg.cassandra, self._connect)

        def load_offsets(keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
            loaded: dict[tuple[str, int], int] = self._retry(
                "load_offsets", lambda: offsets.load(applier.control_connection(), keys)
            )
            return loaded

        gaps = GapStore(cfg.postgres.schema_, cfg.kafka.group_id)
        self._retry("gaps_ensure", lambda: gaps.ensure(applier.control_connection()))
        self._gaps = gaps

        def record_gaps(found: list[Gap]) -> None:
            # Durable before consumption moves past the gap (a failure leaves the position).
            gaps.record(applier.control_connection(), found)
            for g in found:
                M.DATA_GAP_EVENTS.labels(cfg.pipeline, g.topic).inc(g.events)
                log.error("data_gap", gap=g.describe(), reason=g.reason)
            self._last_gap_check = 0.0

        source = Source(ksettings, cfg.kafka.group_id, list(tables), load_offsets, record_gaps)
        # Kafka's answer on the worker's own login, so readiness need not wait for the group's
        # first rebalance (consume.Source.confirm_access).
        if source.confirm_access(list(tables), timeout=5.0):
            self.timeline.mark("kafka_accepted")
        for tc in cfg.tables:
            name = f"{tc.source.keyspace}.{tc.source.table}"
            status.table_quarantine(name, self._quarantined.get(name))
        sweeper = Sweeper(
            tables, self._connect, cfg.tombstone_grace_seconds, cfg.pipeline,
            catch_up=applier.catch_up,
        )  # fmt: skip
        return applier, source, sweeper, status

    def _retry(self, what: str, fn: Any) -> Any:
        delay = 0.5
        while True:
            try:
                return fn()
            except (Transient, psycopg.OperationalError) as e:
                if self.stopping:
                    raise
                M.ERRORS.labels(self.cfg.pipeline, what).inc()
                if not self.health.ready:  # readiness names the failing hop and why (#12)
                    self.health.set_ready(False, f"{what}: {str(e).splitlines()[0]}")
                    self._publish_readiness()
                log.warning("retrying", what=what, error=str(e).splitlines()[0], delay=delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def run(self) -> int:
        cfg = self.cfg
        server = serve(cfg.http_port, self.health) if cfg.http_port else None
        self.timeline.mark("http_serving")
        applier, source, sweeper, status = self._setup()
        self.timeline.mark("setup_done")
        self._applier, self._source, self._status = applier, source, status
        self._topics_by_table = {rt.name: t for t, rt in applier.tables.items()}
        self._applied_total = 0
        self._lag_reported: set[tuple[str, int]] = set()
        last_status = 0.0
        self._last_gap_check = 0.0
        # Decoded events are short-lived and acyclic: reference counting frees them, and the
        # cycle collector's passes over millions of young objects cost more than decoding.
        gc.collect()
        gc.freeze()
        gc.disable()
        pool = ThreadPoolExecutor(1, thread_name_prefix="cdc-write")
        inflight: Inflight | None = None
        batches = 0
        # TTL expiry runs on its own thread and connection (sweep.py says why).
        sweeper.start(cfg.ttl_sweep_interval_seconds)
        if self._quarantined and not applier.tables:
            self.health.set_ready(False, "no table can be served: " + "; ".join(
                f"{t} ({why})" for t, why in sorted(self._quarantined.items())))  # fmt: skip
        else:
            self.health.set_ready(True)
        log.info("worker_started", tables=sorted(self._topics_by_table))
        try:
            while not self.stopping:
                self.health.tick()
                now = time.monotonic()
                if now - last_status >= 1.0:
                    self._report()
                    last_status = now
                if now - self._last_gap_check >= 10.0:
                    self._check_gaps()
                    self._last_gap_check = now
                generation = source.generation
                t0, w0 = time.perf_counter(), time.time_ns()
                msgs = source.poll_batch(cfg.batch.max_events, cfg.batch.max_wait_ms / 1000)
                self.health.kafka = source.refused or source.waiting  # as of this poll
                t1, w1 = time.perf_counter(), time.time_ns()
                decoded = self._decode(applier, source, msgs, generation) if msgs else None
                if decoded is not None:
                    applier.prepare(decoded)
                t2, w2 = time.perf_counter(), time.time_ns()
                if inflight is not None:
                    self._finish(inflight)
                    inflight = None
                if decoded is None:
                    continue
                if source.generation != generation:
                    log.info("batch_abandoned_after_rebalance", events=len(msgs))
                    source.rewind()
                    continue
                span = self.tracer.start_span(
                    "cdc.batch", start_time=w0, attributes={"cdc.batch.events": len(msgs)}
                )
                ctx = trace.set_span_in_context(span)
                self.tracer.start_span("cdc.consume", context=ctx, start_time=w0).end(w1)
                self.tracer.start_span("cdc.decode", context=ctx, start_time=w1).end(w2)
                # The write of this batch overlaps the consumption and decoding of the next.
                inflight = Inflight(
                    pool.submit(self._traced_write, applier, decoded, ctx),
                    decoded, len(msgs), t0, t1, t2, generation, span,
                )  # fmt: skip
                batches += 1
                if batches % 200 == 0:
                    gc.collect(1)
            if inflight is not None:
                self._finish(inflight)
        finally:
            log.info("worker_stopping")
            pool.shutdown(wait=True)
            sweeper.stop()
            source.close()
            if server is not None:
                server.shutdown()
        return 0

    def _check_gaps(self) -> None:
        """Readiness and the tables' status show unacknowledged gaps (gaps.py)."""
        try:
            found = self._gaps.open(self._applier.control_connection())
        except (Transient, psycopg.Error):
            self._applier.control = None
            return
        M.DATA_GAPS_OPEN.labels(self.cfg.pipeline).set(len(found))
        self.health.gap = "; ".join(g.describe() for g in found[:3]) or None
        for table, topic in self._topics_by_table.items():
            mine = [g.describe() for g in found if g.topic == topic]
            self._status.table_gap(table, "; ".join(mine[:3]) or None)

    def _report(self) -> None:
        source, pipeline = self._source, self.cfg.pipeline
        paused = self._status.paused(self._topics_by_table)
        pause_topics = {self._topics_by_table[t] for t, p in paused.items() if p}
        source.set_paused({tp for tp in source.assigned if tp[0] in pause_topics})
        M.PAUSED.labels(pipeline).set(1 if pause_topics else 0)
        lag = source.lag()
        for (t, p), n in lag.items():
            M.CONSUMER_LAG.labels(pipeline, t, str(p)).set(n)
        for t, p in self._lag_reported - lag.keys():  # revoked: another worker reports it now
            M.CONSUMER_LAG.remove(pipeline, t, str(p))
        self._lag_reported = set(lag)
        self._status.heartbeat(len(source.assigned), self._applied_total, sum(lag.values()))
        # Credentials/TLS/ACL refusals name the hop (#12); not ready before Kafka accepted us.
        self.health.kafka = source.refused or source.waiting
        self._publish_readiness()

    def _publish_readiness(self) -> None:
        why = self.health.why()
        self._status.not_ready(None if why is None else reason_code(why))

    def _traced_write(self, applier: BatchApplier, decoded: Decoded, ctx: Context) -> Outcome:
        with self.tracer.start_as_current_span("cdc.write", context=ctx):
            return applier.write(decoded)

    def _finish(self, job: Inflight) -> None:
        """Wait for a batch's write; retry it here on transient failure; then account for it."""
        try:
            outcome: Outcome | None = job.future.result()
        except Transient as e:
            outcome = self._write(self._applier, self._source, job.decoded, job.generation, e)
        finally:
            job.span.end()
        if outcome is None:
            return
        pipeline, decoded = self.cfg.pipeline, job.decoded
        t3 = time.perf_counter()
        self._source.mirror_commit(decoded.next_offsets)
        self._applied_total += outcome.applied
        log.debug(
            "batch_applied", events=job.events, applied=outcome.applied,
            dead_lettered=outcome.dead_lettered, rows=outcome.rows_live + outcome.rows_dead,
            ms=round((t3 - job.t0) * 1000, 2), decode_ms=round((job.t2 - job.t1) * 1000, 2),
        )  # fmt: skip
        M.ROWS_WRITTEN.labels(pipeline, "live").inc(outcome.rows_live)
        M.ROWS_WRITTEN.labels(pipeline, "dead").inc(outcome.rows_dead)
        M.BATCH_SIZE.labels(pipeline).observe(job.events)
        for stage, secs in (("consume", job.t1 - job.t0), ("decode", job.t2 - job.t1),
                            ("write", t3 - job.t2)):  # fmt: skip
            M.BATCH_DURATION.labels(pipeline, stage).observe(secs)
        wall = time.time()
        for table, n in decoded.consumed.items():
            M.EVENTS_CONSUMED.labels(pipeline, table).inc(n)
        for (table, op), n in decoded.ops.items():
            M.EVENTS_APPLIED.labels(pipeline, table, op).inc(n)
        for letter in decoded.dead:
            M.EVENTS_DEAD_LETTERED.labels(pipeline, letter.table, letter.error_class).inc()
        for table, ts in outcome.newest_ts.items():
            M.LAST_EVENT.labels(pipeline, table).set(ts / 1e6)
            M.END_TO_END.labels(pipeline, table).observe(max(0.0, wall - ts / 1e6))
            self._status.table_progress(
                table, outcome.applied_by_table[table], ts, max(0.0, wall - ts / 1e6)
            )

    def _hold(self, source: Source, delay: float, generation: int) -> bool:
        """Wait `delay` keeping the group membership alive; False when the batch is to be
        dropped (stopping, or a rebalance since it was consumed: positions are rewound)."""
        end = time.monotonic() + delay
        while time.monotonic() < end and not self.stopping:
            self.health.tick()
            source.keep_alive()
        if self.stopping:
            return False
        if source.generation != generation:
            log.info("batch_abandoned_after_rebalance")
            source.rewind()
            return False
        return True

    def _decode(
        self, applier: BatchApplier, source: Source, msgs: list[Any], generation: int
    ) -> Decoded | None:
        """Decode a batch; while something it needs is pending (a new column Cassandra has not
        confirmed yet, Cassandra unreachable), hold the batch and retry: nothing that could be
        applied later is dead-lettered, and readiness says why the worker waits."""
        delay = 0.5
        while True:
            try:
                decoded = applier.decode(msgs)
                if delay > 0.5:
                    self.health.set_ready(True)
                return decoded
            except Transient as e:
                M.ERRORS.labels(self.cfg.pipeline, "schema_pending").inc()
                why = "CassandraUnavailable" if "reread" in str(e) else "SchemaPending"
                self.health.set_ready(False, f"{why}: {str(e).splitlines()[0]}")
                log.warning("decode_retry", error=str(e).splitlines()[0], delay=delay)
            if not self._hold(source, delay, generation):
                return None
            delay = min(delay * 2, 30.0)

    def _write(
        self,
        applier: BatchApplier,
        source: Source,
        decoded: Decoded,
        generation: int,
        first: Exception,
    ) -> Outcome | None:
        delay, error = 0.5, first
        while True:
            M.ERRORS.labels(self.cfg.pipeline, "transient").inc()
            M.CIRCUIT_OPEN.labels(self.cfg.pipeline).set(1)
            self.health.set_ready(False, "PostgreSQL or Kafka unavailable")
            log.warning("batch_retry", error=str(error).splitlines()[0], delay=delay)
            applier.conn = None
            if not self._hold(source, delay, generation):
                # The batch is abandoned (stop or rebalance), not failing any more: the new
                # owner retries it. A circuit left open would keep CdcWorkerWriteFailing firing.
                M.CIRCUIT_OPEN.labels(self.cfg.pipeline).set(0)
                return None
            delay = min(delay * 2, 30.0)
            try:
                outcome = applier.write(decoded)
            except Transient as e:
                error = e
                continue
            M.CIRCUIT_OPEN.labels(self.cfg.pipeline).set(0)
            self.health.set_ready(True)
            return outcome


@dataclass(slots=True)
class Inflight:
    future: Future[Outcome]
    decoded: Decoded
    events: int
    t0: float
    t1: float
    t2: float
    generation: int
    span: Span


def install_signals(worker: Worker) -> None:
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
