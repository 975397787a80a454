"""Each data service of the local stack really works, through the clients the product uses."""

from __future__ import annotations

import uuid

import hvac
import psycopg
import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration


def test_postgres_row_round_trip(pg_dsn: str) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (id bigint PRIMARY KEY, body text)")
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "hello"))
        row = conn.execute(f"SELECT id, body FROM {table}").fetchone()
        version = conn.execute("SHOW server_version_num").fetchone()
    assert row == (1, "hello")
    assert version is not None
    assert int(version[0]) >= 150000


def test_redis_key_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"test:{uuid.uuid4()}"
    client.set(key, b"value", ex=30)
    assert client.get(key) == b"value"
    assert 0 < client.ttl(key) <= 30
    client.delete(key)


def test_vault_kv2_secret_round_trip(vault_env: dict[str, str]) -> None:
    client = hvac.Client(url=vault_env["addr"], token=vault_env["token"])
    assert client.is_authenticated()
    path = f"test/{uuid.uuid4().hex}"
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"username": "u", "password": "p"}, mount_point="secret"
    )
    read = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"username": "u", "password": "p"}
    client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")


def test_kafka_message_round_trip(kafka_bootstrap: str) -> None:
    topic = f"test.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"k", value=b'{"op":"i"}', headers={"h": b"1"})
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None
        assert msg.error() is None
        assert (msg.key(), msg.value(), msg.headers()) == (b"k", b'{"op":"i"}', [("h", b"1")])
    finally:
        consumer.close()
        admin.delete_topics([topic])
