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
- the worker is SIGKILLed: its target goes down and its series go stale, so no alert on
  worker metrics can report it. The alert that does is CdcWorkersNoHeartbeat, from the
  operator: the last test runs the real operator with its worker Pod on the stack's local node,
  kills the worker each time the node restarts it (a crash loop) until the alert fires, then
  lets it come back ready and sees the alert resolve.

The module takes about 2 min 40 s on this machine (2 cores, load average 14-18 while it was
measured; 3 min at 40), the operator case a minute of it (`make image` when up to date, the Pod
coming up); a first run may add the Prometheus build (hack/prometheus/build.sh).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from confluent_kafka import Producer

from tests.integration.test_worker_process import _offsets, pt_table, worker_config
from tests.integration.test_worker_semantics import to_event
from tests.support import cassandra as stack_cassandra
from tests.support.cassandra_model import Write
from tests.support.kube import Cluster as Kube
from tests.support.kube import Operator, drop_finalizers
from tests.support.prometheus import Prometheus
from tests.support.worker_proc import WorkerProcess, create_topics, free_port, wait_for

# The first run may build Prometheus (a few minutes cold), inside the fixture's setup.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800), pytest.mark.k8s, pytest.mark.long]

REPO = Path(__file__).resolve().parents[2]
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
        with self._lock:
            server, self._server = self._server, None
            conns, self._conns = self._conns, []
        if server is not None:
            # close() alone does not wake a thread blocked in accept() on Linux: the socket
            # kept listening and let the worker's next connection through, so the circuit
            # was open for half a second instead of until the relay reopened.
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
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
                if self._server is not server:  # closed while this one was being accepted
                    client.close()
                    upstream.close()
                    return
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
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20})
        for k, v in items:
            while True:
                try:
                    producer.produce(self.topic, key=k, value=v)
                    break
                except BufferError:  # the local queue is full: let the broker catch up
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(120) == 0
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
    written = time.time()
    rig.produce(1)
    rig.wait_applied()
    rig.prom.wait_resolved("CdcConnectorOffline", rig.labels, timeout=30)
    rig.prom.wait_firing("CdcConnectorOffline", rig.labels, timeout=90)
    age = time.time() - written
    print(f"last event written -> firing: {age:.1f}s")
    assert age >= 29, "fired before the (scaled) 30 minutes had passed"
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


# ---- a killed worker, seen by the operator --------------------------------------------------
# A killed worker takes its own series with it, so no alert on worker metrics can report it;
# CdcWorkersNoHeartbeat does, from the operator's cdc_operator_pipeline_condition (the worker
# Deployment's ready replicas). This runs the real operator and its worker Pod on the stack's
# local node, and kills the worker process each time the node restarts it (a crash loop) until
# the alert fires; left alone, the worker comes back ready and the alert resolves.

IMAGE = "localhost/cass-cdc-pg:dev"


def _pod_worker_pids(cluster: Kube, ns: str) -> list[int]:
    """Host PIDs of `cdc-worker run` started for the worker Pods of `ns` (HOSTNAME=<pod>)."""
    names = cluster.run(
        "get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=worker",
        "-o", "jsonpath={.items[*].metadata.name}", check=False,
    ).stdout.split()  # fmt: skip
    hosts = {f"HOSTNAME={n}".encode() for n in names}
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = set((p / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if "cdc-worker run" in cmd and "buildah" not in cmd and hosts & environ:
            pids.append(int(p.name))
    return pids


def test_a_worker_killed_in_a_crash_loop_fires_no_heartbeat_then_it_resolves(
    stack: Any, cluster: Kube, tmp_path: Path
) -> None:
    res = subprocess.run(["make", "-s", "image"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, f"make image failed:\n{res.stdout}\n{res.stderr}"
    env = stack("cassandra", "node", "kafka", "postgres", "redis")
    ns = f"alk-{uuid.uuid4().hex[:6]}"
    cass = stack_cassandra.cluster(env)
    session = cass.connect()
    ks = ns.replace("-", "_")
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.orders (id int PRIMARY KEY, v text)")
    cluster.run("create", "namespace", ns)
    cluster.run("create", "secret", "generic", "pg", "-n", ns,
                "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
    cluster.apply(stack_cassandra.secret_manifest(env, ns))
    pipe = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
        "metadata": {"name": ns, "namespace": ns},
        "spec": {
            "cassandra": stack_cassandra.pipeline_spec(env),
            "debezium": {"topicPrefix": ns},
            "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                      "deadLetterTopic": f"{ns}.dlq", "topic": {"partitions": 1}},
            "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc", "schema": ks,
                         "sslMode": "disable", "credentials": {"secretRef": {"name": "pg"}}},
            "redis": {"url": env["REDIS_URL"]},
            "worker": {"image": IMAGE, "imagePullPolicy": "Never", "replicas": 1},
        },
    }  # fmt: skip
    table = {
        "apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"pipelineRef": {"name": ns}, "source": {"keyspace": ks, "table": "orders"}},
    }  # fmt: skip
    op = Operator(cluster, ns, tmp_path).start(
        CDC_OPERATOR_ALLOWED_IMAGES="localhost/cass-cdc-pg:*",
        CDC_OPERATOR_WORKER_HTTP_PORT=str(free_port()),
    )
    labels = {"namespace": ns, "pipeline": ns}
    available = f'cdc_operator_pipeline_condition{{condition="WorkersAvailable",namespace="{ns}"}}'
    try:
        with Prometheus(
            {"cdc-operator": [f"127.0.0.1:{op.metrics_port}"]}, labels={"namespace": "cdc-system"},
            time_scale=SCALE, workdir=tmp_path / "prometheus",
        ) as prom:  # fmt: skip
            cluster.apply([pipe, table])
            t_apply = time.monotonic()

            def ready() -> bool:
                return any(float(s["value"][1]) == 1 for s in prom.query(available))

            wait_for(ready, 240, f"the worker Pod ready (operator log:\n{op.logs()[-2000:]})")
            _timed("apply -> WorkersAvailable", t_apply)
            prom.wait_resolved("CdcWorkersNoHeartbeat", labels, timeout=30)
            t0 = time.monotonic()
            deadline = t0 + 120
            kills = 0
            while not prom.matching("CdcWorkersNoHeartbeat", labels, "firing"):
                assert time.monotonic() < deadline, (
                    f"no alert after {kills} kills\n{prom.describe()}"
                )
                for pid in _pod_worker_pids(cluster, ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        kills += 1
                time.sleep(0.5)
            _timed(f"first kill -> firing ({kills} kills)", t0)
            t1 = time.monotonic()
            prom.wait_resolved("CdcWorkersNoHeartbeat", labels, timeout=180)
            _timed("kills stopped -> resolved", t1)
    finally:
        op.stop()
        drop_finalizers(cluster.kubeconfig, ns)
        cluster.run("delete", "namespace", ns, "--wait=false", check=False)
        cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{ns}", check=False)
        session.execute(f"DROP KEYSPACE {ks}")
        cass.shutdown()
