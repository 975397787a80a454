"""The operator's Kafka appliers against the stack's broker: lag from batched admin calls."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc_operator.appliers import topics
from tests.support.worker_proc import create_topics, produce

pytestmark = pytest.mark.integration


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
