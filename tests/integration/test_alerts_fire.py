"""The chart's alerts fire during real faults and resolve after them (#15).

A real `cdc-worker` process replicates one pipeline from the stack's Kafka into the stack's
PostgreSQL; a real Prometheus (tests/support/prometheus.py) scrapes it with the labels a
ServiceMonitor adds and evaluates the chart's PrometheusRule with every duration scaled by
1/60 (a `for: 5m` waits 5 s, `[15m]` windows are 15 s, CdcConnectorOffline's 30 minutes are 30
s; no threshold on counts is scaled). Faults, one at a time, each followed by its recovery:

- a poison event (not JSON) is dead-lettered: CdcDeadLettersGrowing fires, and resolves once
  the (scaled) 15-minute window holds no new dead letter;
- PostgreSQL becomes unreachable for this worker only: it reaches PostgreSQL through a TCP
  relay the test owns, which the test closes (refusing new connections, cutting open ones)
  and reopens; the shared PostgreSQL is never touched. The worker holds its batch with the
  circuit open: CdcWorkerWriteFailing fires, and resolves when the retried batch commits;
- the pipeline is paused (its Redis pause flag) while 120,000 events are produced: the
  worker reports the lag, CdcReplicationLagHigh fires; resumed, it drains and the alert
  resolves;
- no change events arrive for the scaled 30 minutes while the worker runs (the agent
  stopped): CdcConnectorOffline fires, and resolves with the next applied event;
- the worker is SIGKILLed: its target goes down and its series go stale.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis

from tests.integration.test_worker_process import _offsets, pt_table, worker_config
from tests.integration.test_worker_semantics import to_event
from tests.support.cassandra_model import Write
from tests.support.prometheus import Prometheus
from tests.support.worker_proc import WorkerProcess, create_topics, free_port, produce, wait_for

# The first run may build Prometheus (a few minutes cold), inside the fixture's setup.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SCALE = 1 / 60
JOB = "cdc-worker"


class Relay:
    """A TCP relay to PostgreSQL that the test can close and reopen on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def close(self) -> None:
        """Refuse new connections and cut the open ones, as a stopped PostgreSQL does."""
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@dataclass
class Rig:
    name: str
    topic: str
    bootstrap: str
    pg: psycopg.Connection[Any]
    redis: redis.Redis
    relay: Relay
    worker: WorkerProcess
    prom: Prometheus
    produced: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return {"namespace": self.name, "pipeline": self.name}

    def produce(self, n: int = 1, keys: int = 1000, body: bytes | None = None) -> None:
        """n events (current write times) over `keys` rows, or `body` once."""
        if body is not None:
            items: list[tuple[bytes | None, bytes | None]] = [(b"poison", body)]
        else:
            now = int(time.time() * 1_000_000)
            distinct = [(f"{k}".encode(), to_event(Write(now + k, k, 1, {"a": k}, True), False))
                        for k in range(min(n, keys))]  # fmt: skip
            items = [distinct[i % len(distinct)] for i in range(n)]
        produce(self.bootstrap, self.topic, items)
        self.produced += len(items)

    def wait_applied(self, timeout: float = 90) -> None:
        wait_for(
            lambda: _offsets(self.pg, self.name) >= self.produced,
            timeout,
            f"{self.produced} offsets stored; worker log:\n{self.worker.logs()[-3000:]}",
        )

    def quiet(self, *names: str) -> None:
        """None of these alerts is active for this pipeline."""
        active = [a for n in names for a in self.prom.matching(n, self.labels)]
        assert not active, f"unexpected alerts: {active}"


@pytest.fixture(scope="module")
def rig(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    env = stack("postgres", "redis", "kafka")
    tmp = tmp_path_factory.mktemp("alerts-fire")
    name = f"al{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topics(bootstrap, topic, f"{name}.dlq", partitions=3)
    dsn = psycopg.conninfo.conninfo_to_dict(env["PG_DSN"])
    relay = Relay(str(dsn["host"]), int(dsn.get("port") or 5432))
    relay.open()
    cfg = worker_config(env, name, [pt_table(topic)], max_events=5000)
    cfg["postgres"]["dsn"] = f"postgresql://cdc@127.0.0.1:{relay.port}/cdc"
    worker = WorkerProcess(tmp, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()
    prom = Prometheus(
        {JOB: [(f"127.0.0.1:{cfg['httpPort']}", {"pod": f"{name}-worker-0"})]},
        labels={"namespace": name}, time_scale=SCALE, workdir=tmp / "prometheus",
    )  # fmt: skip
    with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
        r = redis.Redis.from_url(env["REDIS_URL"])
        try:
            with prom:
                rig = Rig(name, topic, bootstrap, pg, r, relay, worker, prom)
                rig.produce(10)
                rig.wait_applied()
                wait_for(lambda: bool(prom.query(f'up{{job="{JOB}"}} == 1')), 30,
                         f"the worker scraped\n{prom.describe()}")  # fmt: skip
                yield rig
        finally:
            worker.stop()
            relay.close()
            r.delete(f"cdc:{name}:paused")
            with contextlib.suppress(psycopg.Error):
                pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _timed(what: str, t0: float) -> None:
    print(f"{what}: {time.monotonic() - t0:.1f}s")


def test_a_poison_event_fires_dead_letters_growing_then_it_resolves(rig: Rig) -> None:
    rig.quiet("CdcDeadLettersGrowing", "CdcWorkerWriteFailing", "CdcReplicationLagHigh")
    t0 = time.monotonic()
    rig.produce(body=b"{not json")
    rig.wait_applied()
    alert = rig.prom.wait_firing("CdcDeadLettersGrowing", rig.labels, timeout=30)
    _timed("dead letter -> firing", t0)
    assert alert["labels"]["table"] == "ks.t", alert
    assert alert["labels"]["reason"] == "DecodeError", alert
    assert alert["annotations"]["runbook_url"] == "docs/runbooks/CdcDeadLettersGrowing.md"
    rig.prom.wait_resolved("CdcDeadLettersGrowing", rig.labels, timeout=60)
    _timed("dead letter -> resolved", t0)


def test_postgres_unreachable_fires_write_failing_then_it_resolves(rig: Rig) -> None:
    rig.relay.close()
    t0 = time.monotonic()
    try:
        rig.produce(5)  # something to write: the circuit opens on a failed write
        alert = rig.prom.wait_firing("CdcWorkerWriteFailing", rig.labels, timeout=60)
        _timed("postgres closed -> firing", t0)
        assert alert["labels"]["severity"] == "critical"
    finally:
        rig.relay.open()
    t1 = time.monotonic()
    rig.wait_applied()
    rig.prom.wait_resolved("CdcWorkerWriteFailing", rig.labels, timeout=60)
    _timed("postgres reopened -> resolved", t1)


def test_a_paused_pipeline_with_a_backlog_fires_lag_high_then_it_drains(rig: Rig) -> None:
    rig.redis.set(f"cdc:{rig.name}:paused", "1")
    time.sleep(2)  # the worker reads the flag every second
    t0 = time.monotonic()
    try:
        rig.produce(120_000)
        _timed("backlog produced", t0)
        alert = rig.prom.wait_firing("CdcReplicationLagHigh", rig.labels, timeout=90)
        _timed("backlog -> firing", t0)
        assert float(alert["value"]) > 100_000
    finally:
        rig.redis.delete(f"cdc:{rig.name}:paused")
    t1 = time.monotonic()
    rig.wait_applied(180)
    rig.prom.wait_resolved("CdcReplicationLagHigh", rig.labels, timeout=60)
    _timed("resumed -> drained and resolved", t1)


def test_no_change_events_for_the_offline_limit_fires_connector_offline(rig: Rig) -> None:
    # The backlog just drained was written more than the (scaled) 30 minutes ago, so the alert
    # may be firing already: a fresh event resolves it, then nothing more arrives.
    rig.produce(1)
    rig.wait_applied()
    rig.prom.wait_resolved("CdcConnectorOffline", rig.labels, timeout=30)
    t0 = time.monotonic()
    rig.prom.wait_firing("CdcConnectorOffline", rig.labels, timeout=90)
    _timed("last event -> firing", t0)
    assert time.monotonic() - t0 > 20, "fired before the (scaled) 30 minutes had passed"
    rig.produce(1)
    t1 = time.monotonic()
    rig.wait_applied()
    rig.prom.wait_resolved("CdcConnectorOffline", rig.labels, timeout=30)
    _timed("new event -> resolved", t1)


def test_a_killed_worker_goes_down_and_its_series_go_stale(rig: Rig) -> None:
    rig.worker.kill(signal.SIGKILL)
    wait_for(lambda: bool(rig.prom.query(f'up{{job="{JOB}"}} == 0')), 30, "the target down")
    wait_for(lambda: not rig.prom.query(f'cdc_worker_circuit_open{{namespace="{rig.name}"}}'),
             30, "the worker's series stale")  # fmt: skip
