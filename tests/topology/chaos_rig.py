"""The chaos run's pipeline on the topology stack: tables, topics, workers and the final proof.

One pipeline as the operator renders it (`cdc_operator.builders.worker_config`, the product's own
renderer) over the secure hops the stack provides: Kafka SASL_SSL/SCRAM as the `worker` user when
the agents' topic prefix falls under the stack's ACL prefix (`CDC_DEBEZIUM_TOPIC_PREFIX=secure`,
what `make bench-chaos` sets; plaintext otherwise, said in the result), PostgreSQL verify-full as
`cdc_app`, Redis TLS as the ACL user, Cassandra TLS as `cdc_worker`. Workers are real
`cdc-worker run` processes of one consumer group, each with its own HTTP port.

The proof after the run: PostgreSQL equals Cassandra row by row (every column of every row of
both tables, Cassandra read at ALL), the workers' stored offsets reach every partition's end, and
the dead-letter topic holds nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import SimpleStatement
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cdc_operator.builders.worker_config import Table, worker_config
from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec
from tests.support import cassandra as stack_cassandra
from tests.support.worker_proc import WorkerProcess, free_port, wait_for
from tests.topology.chaos_load import EV_DDL, KV_DDL

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "hack" / "stack"
TOPIC_PARTITIONS = 6
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Columns compared, in order; the key first.
COLUMNS = {"ev": ("p", "c", "a", "b", "d", "t", "tags"), "kv": ("id", "v", "n", "f")}
KEYS = {"ev": 2, "kv": 1}


def topology_state() -> Path:
    """The topology stack's state directory; refuses to act on anything else (the default stack
    is shared with other test runs: faults must never reach it)."""
    state = os.environ.get("CDC_STACK_STATE", "")
    if os.environ.get("CDC_STACK_CASSANDRA_NODES", "1") == "1" or "topology" not in state:
        raise RuntimeError(
            "the chaos run needs the separate topology stack (TOPOLOGY_ENV of the Makefile: "
            "CDC_STACK_STATE=.stack/topology, CDC_STACK_CASSANDRA_NODES=3, ...)"
        )
    return Path(state)


def stack(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    topology_state()
    return subprocess.run(
        [str(STACK), *args], capture_output=True, text=True, check=check, timeout=900
    )


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def recorded_pid(member_dir: str, name: str) -> int:
    """The PID the stack recorded for a member (e.g. ("kafka-2", "kafka")), checked against the
    process's kernel start time so a recycled PID is never signalled."""
    pid_s, started = (topology_state() / member_dir / f"{name}.pid").read_text().split()
    pid = int(pid_s)
    if _start_time(pid) != started:
        raise RuntimeError(f"{member_dir}: recorded pid {pid} is not running")
    return pid


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def cassandra_session(env: dict[str, str], consistency: int) -> tuple[Cluster, Session]:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(
            DCAwareRoundRobinPolicy(env.get("CASSANDRA_LOCAL_DATACENTER", "datacenter1"))
        ),
        consistency_level=consistency,
        request_timeout=60,
    )
    cluster = stack_cassandra.cluster(env, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    return cluster, cluster.connect()


def secure_kafka(env: dict[str, str]) -> bool:
    return env["DEBEZIUM_TOPIC_PREFIX"].startswith(env["KAFKA_SECURE_TOPIC_PREFIX"].rstrip("."))


@dataclass
class Pipeline:
    env: dict[str, str]
    tmp: Path
    name: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:6]}")
    workers: list[WorkerProcess] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    operator: Any = None  # chaos_operator.OperatorPart when the run has the operator

    @property
    def namespace(self) -> str:
        """The Kubernetes namespace the pipeline would live in (consumer group
        `cdc.<namespace>.<name>`, what the operator renders)."""
        return f"chaos-{self.name.removeprefix('chaos')}"

    @property
    def keyspace(self) -> str:
        return self.name

    @property
    def schema(self) -> str:
        return self.name

    def topic(self, table: str) -> str:
        return f"{self.env['DEBEZIUM_TOPIC_PREFIX']}.{self.keyspace}.{table}"

    @property
    def dlq(self) -> str:
        prefix = self.env["KAFKA_SECURE_DLQ_PREFIX"] if secure_kafka(self.env) else "dlq."
        return f"{prefix}{self.name}"

    def hops(self) -> dict[str, str]:
        kafka = "SASL_SSL SCRAM-SHA-512 (worker)" if secure_kafka(self.env) else "PLAINTEXT"
        return {"kafka": kafka, "postgres": "TLS verify-full (cdc_app)",
                "redis": "TLS + ACL user", "cassandra": "TLS + login (cdc_worker)"}  # fmt: skip

    # -- setup -------------------------------------------------------------------------------
    def create(self, session: Session, agents_ready: Callable[[list[str]], bool]) -> None:
        """Topics (RF 3, min ISR 2), the RF=3 keyspace and its two cdc tables, then wait until
        every node's agent captures both."""
        admin = AdminClient({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP_SERVERS"]})
        isr = {"min.insync.replicas": "2"}
        new = [NewTopic(self.topic(t), TOPIC_PARTITIONS, 3, config=isr) for t in COLUMNS]
        new.append(NewTopic(self.dlq, 1, 3, config=isr))
        for f in admin.create_topics(new).values():
            f.result(60)
        session.execute(f"CREATE KEYSPACE {self.keyspace} WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 3}")  # fmt: skip
        session.execute(EV_DDL.format(ks=self.keyspace))
        session.execute(KV_DDL.format(ks=self.keyspace))
        tables = [f"{self.keyspace}.{t}" for t in COLUMNS]
        wait_for(lambda: agents_ready(tables), 180, f"every agent capturing {tables}")
        self.config = self._render()

    def _render(self) -> dict[str, Any]:
        env, secure = self.env, secure_kafka(self.env)
        ca = Path(env["CDC_STACK_CA"]).read_text()
        spec = CdcPipelineSpec.model_validate({
            "cassandra": {"contactPoints": env["CASSANDRA_CONTACT_POINTS"].split(","),
                          "localDatacenter": env.get("CASSANDRA_LOCAL_DATACENTER", "datacenter1"),
                          "credentials": {"secretRef": {"name": "cassandra"}},
                          "tls": {"caBundle": ca}},
            "debezium": {"topicPrefix": env["DEBEZIUM_TOPIC_PREFIX"]},
            "kafka": {"bootstrapServers": env["KAFKA_SASL_SSL_BOOTSTRAP" if secure
                                              else "KAFKA_BOOTSTRAP_SERVERS"],
                      "deadLetterTopic": self.dlq,
                      "securityProtocol": "SASL_SSL" if secure else "PLAINTEXT",
                      **({"saslMechanism": env["KAFKA_SASL_MECHANISM"], "caBundle": ca,
                          "credentials": {"secretRef": {"name": "kafka"}}} if secure else {}),
                      "topic": {"partitions": TOPIC_PARTITIONS, "replicationFactor": 3}},
            "postgres": {"host": env["PG_SECURE_HOST"], "port": int(env["PG_SECURE_PORT"]),
                         "database": "cdc", "schema": self.schema, "sslMode": "verify-full",
                         "caBundle": ca, "credentials": {"secretRef": {"name": "postgres"}}},
            "redis": {"url": env["REDIS_TLS_URL"], "caBundle": ca,
                      "credentials": {"secretRef": {"name": "redis"}}},
            "worker": {"image": "localhost/cass-cdc-pg:dev",
                       "batch": {"maxEvents": 5000, "maxWaitMs": 200}},
        })  # fmt: skip
        tables = [
            Table(t, TableReplicationSpec.model_validate({
                "pipelineRef": {"name": self.name},
                "source": {"keyspace": self.keyspace, "table": t}}))
            for t in COLUMNS
        ]  # fmt: skip
        doc: dict[str, Any] = worker_config(self.namespace, self.name, spec, tables)
        # The ConfigMap mounts the CA files at /etc/cdc; here they are the stack's CA file.
        for section, key in (("kafka", "sslCaLocation"), ("postgres", "sslRootCert"),
                             ("redis", "caFile")):  # fmt: skip
            if key in doc.get(section, {}):
                doc[section][key] = env["CDC_STACK_CA"]
        doc["cassandra"]["tls"]["caFile"] = env["CDC_STACK_CA"]
        return doc

    def drop(self, session: Session) -> None:
        """Remove the run's keyspace, schema and topics (every agent keeps capturing a cdc table
        until it is dropped)."""
        self.stop()
        session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=120)
        with psycopg.connect(self.pg_dsn(), autocommit=True) as pg:
            pg.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        admin = AdminClient({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP_SERVERS"]})
        for f in admin.delete_topics([*(self.topic(t) for t in COLUMNS), self.dlq]).values():
            f.result(60)

    def worker_env(self) -> dict[str, str]:
        """The worker Pod's Secret-backed environment: logins as files, never in the config."""
        env = self.env
        out = {"POSTGRES_USERNAME": env["PG_APP_USER"],
               "POSTGRES_PASSWORD_FILE": env["PG_APP_PASSWORD_FILE"],
               "REDIS_PASSWORD_FILE": env["REDIS_PASSWORD_FILE"],
               **stack_cassandra.worker_env(env)}  # fmt: skip
        if secure_kafka(env):
            out |= {"KAFKA_USERNAME": env["KAFKA_WORKER_USER"],
                    "KAFKA_PASSWORD_FILE": env["KAFKA_WORKER_PASSWORD_FILE"]}  # fmt: skip
        return out

    def add_worker(self) -> WorkerProcess:
        cfg = {**self.config, "httpPort": free_port()}
        w = WorkerProcess(self.tmp, cfg, self.worker_env()).start()
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for w in self.workers:
            try:
                w.stop()
            except subprocess.TimeoutExpired:  # no clean stop within 30 s on a starved machine
                w.kill()

    # -- the proof ---------------------------------------------------------------------------
    def pg_dsn(self) -> str:
        return self.env["PG_DSN"]

    def stored_offsets(self) -> int:
        with psycopg.connect(self.pg_dsn(), autocommit=True) as pg:
            try:
                row = pg.execute(
                    f'SELECT coalesce(sum(next_offset), 0) FROM "{self.schema}"._cdc_offsets'
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                return 0
        return int(row[0]) if row else 0

    def high_watermarks(self) -> int:
        c = Consumer({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP_SERVERS"],
                      "group.id": f"hw-{uuid.uuid4().hex[:6]}"})  # fmt: skip
        try:
            return sum(
                c.get_watermark_offsets(TopicPartition(self.topic(t), p), timeout=10)[1]
                for t in COLUMNS for p in range(TOPIC_PARTITIONS)
            )  # fmt: skip
        finally:
            c.close()

    def drained(self) -> bool:
        return self.stored_offsets() >= self.high_watermarks()

    def dead_letters(self) -> list[dict[str, str]]:
        c = Consumer({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP_SERVERS"],
                      "group.id": f"dlq-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest"})  # fmt: skip
        try:
            high = c.get_watermark_offsets(TopicPartition(self.dlq, 0), timeout=10)[1]
            out: list[dict[str, str]] = []
            if high == 0:
                return out
            c.assign([TopicPartition(self.dlq, 0, 0)])
            deadline = time.monotonic() + 30
            while len(out) < high and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    headers: list[Any] = list(m.headers() or [])
                    out.append({k: bytes(v or b"").decode(errors="replace") for k, v in headers})
            return out
        finally:
            c.close()


def _norm(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """One row as comparable plain values: timestamps as epoch ms, sets as sorted tuples."""
    out: list[Any] = []
    for v in row:
        if isinstance(v, dt.datetime):
            aware = v if v.tzinfo else v.replace(tzinfo=dt.UTC)
            out.append((aware - EPOCH) // dt.timedelta(milliseconds=1))
        elif isinstance(v, (set, frozenset, list)) or type(v).__name__ == "SortedSet":
            out.append(tuple(sorted(v)))
        else:
            out.append(v)
    return tuple(out)


def cassandra_rows(session: Session, keyspace: str, table: str) -> dict[tuple[Any, ...], Any]:
    cols = COLUMNS[table]
    stmt = SimpleStatement(f"SELECT {', '.join(cols)} FROM {keyspace}.{table}",
                           consistency_level=ConsistencyLevel.ALL, fetch_size=5000)  # fmt: skip
    rows = (_norm(table, tuple(r)) for r in session.execute(stmt, timeout=120))
    return {r[: KEYS[table]]: r for r in rows}


def pg_rows(dsn: str, schema: str, table: str) -> dict[tuple[Any, ...], Any]:
    cols = COLUMNS[table]
    with psycopg.connect(dsn, autocommit=True) as pg:
        try:
            rows = pg.execute(f'SELECT {", ".join(cols)} FROM "{schema}".{table}').fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
    return {r[: KEYS[table]]: _norm(table, r) for r in rows}


@dataclass(frozen=True)
class Comparison:
    table: str
    cassandra_rows: int
    postgres_rows: int
    missing: int  # in Cassandra, not in PostgreSQL
    extra: int  # in PostgreSQL, not in Cassandra
    different: int  # both, some column differs
    samples: list[str]

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.different


def compare(session: Session, pipeline: Pipeline, table: str) -> Comparison:
    want = cassandra_rows(session, pipeline.keyspace, table)
    got = pg_rows(pipeline.pg_dsn(), pipeline.schema, table)
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    different = [k for k in want if k in got and want[k] != got[k]]
    samples = [f"missing {want[k]}" for k in missing[:5]] + [f"extra {got[k]}" for k in extra[:5]]
    samples += [f"cassandra {want[k]} != postgres {got[k]}" for k in different[:5]]
    return Comparison(table, len(want), len(got), len(missing), len(extra), len(different), samples)


def converge(session: Session, pipeline: Pipeline, timeout: float) -> list[Comparison]:
    """Compare until PostgreSQL equals Cassandra or the time is up (TTLs run out meanwhile, and
    reads at ALL repair replicas, whose repairs are new events); the last comparison."""
    deadline = time.monotonic() + timeout
    while True:
        result = [compare(session, pipeline, t) for t in COLUMNS]
        if all(c.differences == 0 for c in result) or time.monotonic() > deadline:
            return result
        time.sleep(5)
