"""The real `cdc-worker` over the stack's secure listeners (issue #12): PostgreSQL verify-full
as cdc_app, Kafka SASL_SSL/SCRAM-SHA-512 as the worker user (topics under `secure.`, its
dead-letter topic under `secure-dlq.`), Redis TLS as the ACL user cdc. A wrong password or an
untrusted CA fails with a log line naming the hop, and nothing is dead-lettered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.events import cell, envelope
from tests.support.worker_proc import (
    WorkerProcess,
    consume_all,
    create_topics,
    free_port,
    produce,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.k8s]
REPO = Path(__file__).resolve().parents[2]
SCHEMA = {"partitionKey": ["p"], "columns": {"p": "int", "a": "int"}}


@pytest.fixture
def env(stack: Any) -> dict[str, str]:
    return stack("postgres", "redis", "kafka")  # type: ignore[no-any-return]


@pytest.fixture
def names(env: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(pipeline/schema name, table topic, dead-letter topic) under the stack's ACL prefixes."""
    name = f"sec_{uuid.uuid4().hex[:8]}"
    topic = f"{env['KAFKA_SECURE_TOPIC_PREFIX']}{name}.ks.t"
    dlq = f"{env['KAFKA_SECURE_DLQ_PREFIX']}{name}"
    create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], topic, dlq, partitions=1)
    yield name, topic, dlq
    with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
        pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def config(env: dict[str, str], name: str, topic: str, dlq: str, ca: str) -> dict[str, Any]:
    return {
        "pipeline": name,
        "kafka": {"bootstrapServers": env["KAFKA_SASL_SSL_BOOTSTRAP"],
                  "groupId": f"{env['KAFKA_SECURE_GROUP_PREFIX']}test.{name}",
                  "deadLetterTopic": dlq, "securityProtocol": "SASL_SSL",
                  "saslMechanism": env["KAFKA_SASL_MECHANISM"], "sslCaLocation": ca},
        "postgres": {"host": env["PG_SECURE_HOST"], "port": int(env["PG_SECURE_PORT"]),
                     "database": "cdc", "schema": name, "sslMode": "verify-full",
                     "sslRootCert": ca},
        "redis": {"url": env["REDIS_TLS_URL"], "caFile": ca},
        "tables": [{"topic": topic, "source": {"keyspace": "ks", "table": "t"},
                    "target": {"table": "t"}, "schema": SCHEMA}],
        "batch": {"maxEvents": 100, "maxWaitMs": 100},
        "httpPort": free_port(),
    }  # fmt: skip


def secrets(env: dict[str, str], **override: str) -> dict[str, str]:
    return {
        "POSTGRES_USERNAME": env["PG_APP_USER"],
        "POSTGRES_PASSWORD_FILE": env["PG_APP_PASSWORD_FILE"],
        "KAFKA_USERNAME": env["KAFKA_WORKER_USER"],
        "KAFKA_PASSWORD_FILE": env["KAFKA_WORKER_PASSWORD_FILE"],
        "REDIS_PASSWORD_FILE": env["REDIS_PASSWORD_FILE"],
        **override,
    }


def rows(env: dict[str, str], name: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
        try:
            return pg.execute(f'SELECT p, a FROM "{name}".t ORDER BY p').fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def events(n: int) -> list[tuple[bytes | None, bytes | None]]:
    return [(None, envelope("i", 1_000_000 + p, "ks", "t", {"p": cell(p), "a": cell(p * 10)}))
            for p in range(n)]  # fmt: skip


def test_worker_applies_over_every_secure_hop(
    env: dict[str, str], names: tuple[str, str, str], tmp_path: Path
) -> None:
    name, topic, dlq = names
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic, [*events(5), (None, b"{not json")])
    w = WorkerProcess(tmp_path, config(env, name, topic, dlq, env["CDC_STACK_CA"]),
                      secrets(env)).start()  # fmt: skip
    try:
        wait_for(lambda: len(rows(env, name)) == 5, 60, "5 rows applied as cdc_app")
        assert rows(env, name) == [(p, p * 10) for p in range(5)]
        # The poison event went to the dead-letter topic, written as the worker user.
        assert len(consume_all(env["KAFKA_BOOTSTRAP_SERVERS"], dlq, 1)) == 1
        with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
            owner = pg.execute(
                "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 't'",
                (name,),
            ).fetchone()
            ssl = pg.execute(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                "USING (pid) WHERE a.usename = %s", (env["PG_APP_USER"],),
            ).fetchone()  # fmt: skip
        assert owner == (env["PG_APP_USER"],)
        assert ssl == (True,)
        # Redis over TLS as the ACL user: the heartbeat lands under the pipeline's prefix.
        import redis

        r = redis.Redis.from_url(env["REDIS_URL"])
        wait_for(lambda: bool(list(r.scan_iter(f"cdc:{name}:worker:*"))), 20, "a heartbeat")
    finally:
        w.stop()


@pytest.mark.parametrize(
    ("hop", "broken"),
    [
        ("kafka", {"KAFKA_PASSWORD": "wrong-password"}),
        ("postgres", {"POSTGRES_PASSWORD": "wrong-password"}),
        ("postgres_ca", {}),
    ],
)
def test_wrong_password_or_untrusted_ca_names_the_hop_and_dead_letters_nothing(
    env: dict[str, str], names: tuple[str, str, str], tmp_path: Path, hop: str,
    broken: dict[str, str],
) -> None:  # fmt: skip
    name, topic, dlq = names
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic, events(3))
    cfg = config(env, name, topic, dlq, env["CDC_STACK_CA"])
    if hop == "postgres_ca":  # a CA that did not sign the server's certificate
        cfg["postgres"]["sslRootCert"] = str(REPO / ".stack" / "k8s" / "pki" / "ca.crt")
    sec = secrets(env)
    for k, v in broken.items():
        sec.pop(f"{k}_FILE", None)
        sec[k] = v
    w = WorkerProcess(tmp_path, cfg, sec).start()
    try:
        if hop == "kafka":
            want = ("kafka", "Authentication failed")
        elif hop == "postgres":
            want = ("postgres_connect", "password authentication failed")
        else:
            want = ("postgres_connect", "certificate verify failed")
        wait_for(lambda: all(s in w.logs() for s in want), 60, f"a log line naming {hop}")
    finally:
        w.stop()
    assert rows(env, name) == []
    assert consume_all(env["KAFKA_BOOTSTRAP_SERVERS"], dlq, 1, timeout=3) == []
