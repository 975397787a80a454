"""The operator's Kafka appliers against the stack's broker: lag from batched admin calls."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc_operator.appliers import topics
from tests.support.worker_proc import create_topics, produce

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_consumer_lag_from_committed_and_end_offsets(kafka_bootstrap: str) -> None:
    t1, t2, group = f"lag-{uuid.uuid4().hex[:6]}", f"lag-{uuid.uuid4().hex[:6]}", "g-lag"
    create_topics(kafka_bootstrap, t1, t2, partitions=2)
    produce(kafka_bootstrap, t1, [(b"k%d" % i, b"v") for i in range(10)])
    produce(kafka_bootstrap, t2, [(b"k%d" % i, b"v") for i in range(5)])
    settings = {"bootstrap.servers": kafka_bootstrap}
    # Nothing committed: everything from the low watermark is behind.
    assert topics.consumer_lag(settings, group, [t1, t2, "no-such-topic"]) == {t1: 10, t2: 5}
    c = Consumer({**settings, "group.id": group, "enable.auto.commit": False})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(t1, p), timeout=10)[1] for p in (0, 1)}
        c.commit(offsets=[TopicPartition(t1, 0, ends[0]), TopicPartition(t1, 1, 0)],
                 asynchronous=False)  # fmt: skip
    finally:
        c.close()
    assert topics.consumer_lag(settings, group, [t1, t2]) == {t1: ends[1], t2: 5}
    assert topics.consumer_lag({"bootstrap.servers": "127.0.0.1:1"}, group, [t1], 1) == {}


def test_lag_reads_survive_topics_coming_and_going(kafka_bootstrap: str) -> None:
    """librdkafka's ListOffsets frees a request under its caller when a partition's leader is
    unknown and the metadata changes meanwhile (a segfault that killed the operator in a
    360-object burst); lag asks only for partitions whose leader the metadata names."""
    out = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-m", "tests.support.lag_churn",
         kafka_bootstrap, "30"],
        capture_output=True, text=True, timeout=180, check=False, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["stable"] == 3
    assert result["calls"] > 200, result  # it did read: 6,222 calls in 20 s on a quiet machine
    assert result["topics"] > 10, result
