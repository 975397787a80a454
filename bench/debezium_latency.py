"""Benchmark: the Debezium Cassandra agent's latency, from a CQL write to its message in Kafka.

One row at a time (`INSERT … (id, v)`, a cdc=true table in keyspace `cdcbench`): the write is
acknowledged by Cassandra (CL ONE), then the clock runs until the consumer, assigned to the
table's topic, holds the message with that key. The next write starts only then, so every sample
is an isolated write, not a queue. Prints median, p95 and max and writes
bench-results/debezium.json. Needs `hack/stack up kafka cassandra debezium` (started if not).

    make bench-debezium                 # 250 writes after 10 warm-up writes
    BENCH_WRITES=1000 make bench-debezium
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import STACK, _stack_env  # noqa: E402
from tests.support import cassandra as stack_cassandra  # noqa: E402

KEYSPACE, TABLE = "cdcbench", "latency"
WRITES = int(os.environ.get("BENCH_WRITES", "250"))
WARMUP = 10
OUT = REPO / "bench-results" / "debezium.json"


def _wait_agent_captures(env: dict[str, str], table: str, timeout: float = 120) -> None:
    """cdc-agent restarts the agent for a table created with its keyspace; wait until it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{env['CDC_AGENT_URL']}/status", timeout=5) as r:  # noqa: S310
                st = json.loads(r.read())
            if table in st["agent_tables"] and st["phase"] == "ready":
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise SystemExit(f"cdc-agent did not report {table} captured within {timeout:.0f}s")


def main() -> int:
    subprocess.run([str(STACK), "up", "kafka", "cassandra", "debezium"], check=True)
    env = _stack_env()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"{env['DEBEZIUM_TOPIC_PREFIX']}.{KEYSPACE}.{TABLE}"
    cluster = stack_cassandra.cluster(env)
    session = cluster.connect()
    fresh = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (KEYSPACE, TABLE),
    ).one()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    if fresh is None:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.{TABLE} (id int PRIMARY KEY, run text, "
            "v text) WITH cdc = true"
        )
        _wait_agent_captures(env, f"{KEYSPACE}.{TABLE}")
    insert = session.prepare(f"INSERT INTO {KEYSPACE}.{TABLE} (id, run, v) VALUES (?, ?, ?)")
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}"}
    )
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, high)])
    run = uuid.uuid4().hex[:8]

    def one(i: int) -> float:
        session.execute(insert, (i, run, "x" * 64))
        acked = time.monotonic()
        deadline = acked + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.005)
            if msg is None or msg.error() is not None:
                continue
            key = json.loads(msg.key() or b"{}")
            if key.get("payload", key).get("id") == i:
                return time.monotonic() - acked
        raise RuntimeError(f"write {i} not in {topic} after 30 s")

    for i in range(WARMUP):
        one(-1 - i)
    started = time.monotonic()
    samples = [one(i) for i in range(WRITES)]
    elapsed = time.monotonic() - started
    consumer.close()
    cluster.shutdown()

    ordered = sorted(samples)
    result: dict[str, Any] = {
        "writes": WRITES,
        "median_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "max_s": round(ordered[-1], 3),
        "min_s": round(ordered[0], 3),
        "mean_s": round(statistics.fmean(ordered), 3),
        "elapsed_s": round(elapsed, 1),
        "settings": {
            "commitlog_sync_period": "250ms",
            "commit.log.marked.complete.poll.interval.ms": 250,
            "poll.interval.ms": 100,
            "commit.log.real.time.processing.enabled": True,
        },
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "samples_s": [round(s, 4) for s in samples],
    }
    print(f"Debezium Cassandra agent latency, CQL write ack -> message in Kafka ({WRITES} writes)")
    for key in ("median_s", "p95_s", "max_s", "min_s", "mean_s"):
        print(f"  {key[:-2]:<7} {result[key]:.3f} s")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
