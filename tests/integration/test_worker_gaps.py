"""Silent gaps are not silent: events Kafka no longer holds are recorded and reported.

A worker stopped while retention deleted events it had not applied yet, and a topic deleted
and re-created under the same name: the worker records the gap in PostgreSQL before moving on,
counts it, reports `DataGap` (readiness, the table's status in Redis) until the gap is
acknowledged, and applies everything Kafka still holds.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from tests.integration.test_worker_process import _dsn_without_password, pt_table, worker_config
from tests.integration.test_worker_semantics import to_event
from tests.support.cassandra_model import Write
from tests.support.worker_proc import WorkerProcess, create_topics, produce, wait_for

pytestmark = pytest.mark.integration
assert _dsn_without_password  # the shared config helper builds the DSN without a password


@pytest.fixture
def env(stack: Any) -> dict[str, str]:
    return stack("postgres", "redis", "kafka")  # type: ignore[no-any-return]


def _events(start: int, n: int) -> list[tuple[bytes, bytes]]:
    return [(b"k%d" % i, to_event(Write(10 + i, i, 0, {"a": i}, True), False))
            for i in range(start, start + n)]  # fmt: skip


def _ready(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_events_lost_to_retention_or_a_recreated_topic_are_reported(
    env: dict[str, str], tmp_path: Path
) -> None:
    name = f"g{uuid.uuid4().hex[:8]}"
    topic = f"{name}.ks.t"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topics(bootstrap, topic, f"{name}.dlq", partitions=1)
    pg = psycopg.connect(env["PG_DSN"], autocommit=True)

    def keys() -> list[int]:
        return [r[0] for r in pg.execute(f"SELECT p FROM {name}.t ORDER BY p").fetchall()]

    def stored() -> int:
        try:
            row = pg.execute(f"SELECT next_offset FROM {name}._cdc_offsets").fetchone()
        except psycopg.errors.UndefinedTable:
            return -1
        return int(row[0]) if row else -1

    def start() -> WorkerProcess:
        cfg = worker_config(env, name, [pt_table(topic)])
        return WorkerProcess(tmp_path, cfg, {"POSTGRES_PASSWORD": "cdc"}).start()

    produce(bootstrap, topic, _events(0, 100))
    w = start()
    wait_for(lambda: stored() == 100, 60, "the first 100 events applied")
    w.stop()
    # While the worker is down, retention removes events it never applied (100..149).
    produce(bootstrap, topic, _events(100, 100))
    for f in admin.delete_records([TopicPartition(topic, 0, 150)]).values():
        f.result(30)
    produce(bootstrap, topic, _events(200, 10))
    w = start()
    try:
        wait_for(lambda: stored() == 210, 60, f"the rest applied; log:\n{w.logs()[-2000:]}")
        assert keys() == [*range(100), *range(150, 210)]
        gaps = pg.execute(f"SELECT topic, kafka_partition, from_offset, to_offset, reason "
                          f"FROM {name}._cdc_gaps").fetchall()  # fmt: skip
        assert gaps == [(topic, 0, 100, 150, "BelowLowWatermark")]
        wait_for(lambda: _ready(w.port)[0] == 503, 30, "readiness to report the gap")
        assert "DataGap" in _ready(w.port)[1]
        assert _metric(w.port, f'cdc_worker_data_gap_events_total{{pipeline="{name}",') == 50
        r = redis.Redis.from_url(env["REDIS_URL"])
        gap = r.hget(f"cdc:{name}:table:ks.t", "dataGap")
        assert gap is not None
        assert b"100..149" in gap
        # Acknowledged (after a verify/repair): ready again, the table's status clears.
        pg.execute(f"UPDATE {name}._cdc_gaps SET acknowledged_at = now()")
        wait_for(lambda: _ready(w.port)[0] == 200, 30, "readiness after acknowledging")
        assert r.hget(f"cdc:{name}:table:ks.t", "dataGap") is None
    finally:
        w.stop()
    # The topic is deleted and re-created under the same name: the stored offset (210) is
    # beyond its end; what it holds now is applied from its start, and the gap recorded.
    for f in admin.delete_topics([topic]).values():
        f.result(30)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 30, "topic deleted")
    create_topics(bootstrap, topic, partitions=1)
    produce(bootstrap, topic, _events(300, 5))
    w = start()
    try:
        wait_for(lambda: 300 in keys() and 304 in keys(), 60,
                 f"the new topic's events; log:\n{w.logs()[-2000:]}")  # fmt: skip
        sql = f"SELECT reason FROM {name}._cdc_gaps WHERE acknowledged_at IS NULL"
        reasons = [r[0] for r in pg.execute(sql).fetchall()]
        assert reasons == ["AboveHighWatermark"]
    finally:
        w.stop()
        pg.close()
