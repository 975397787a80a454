"""A Cassandra table captured by the stack's agent and a worker config for it.

Tests that judge the real pipeline (CQL → the Debezium agent run by cdc-agent → Kafka → a
`cdc-worker` process → PostgreSQL) all need the same start: a keyspace with one `cdc = true`
table, a wait until the running agent captures it (cdc-agent restarts the agent for a new
table), the table's topic and a dead-letter topic, and the worker config that reads them.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from cassandra.cluster import Session

from tests.support import cassandra as stack_cassandra
from tests.support.worker_proc import create_topics, free_port, wait_for


def agent_status(env: dict[str, str]) -> dict[str, Any]:
    url = f"{env['CDC_AGENT_URL']}/status"
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the stack's agent
        return json.loads(r.read())  # type: ignore[no-any-return]


def topic_prefix(env: dict[str, str]) -> str:
    for line in Path(env["DEBEZIUM_CONFIG"]).read_text().splitlines():
        if line.startswith("topic.prefix="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no topic.prefix in the agent's config")


def dsn_without_password(dsn: str) -> str:
    """The stack's DSN with its password taken out (workers read POSTGRES_PASSWORD)."""
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, f"{u.username}@{u.hostname}:{u.port}", u.path, u.query, ""))


@dataclass(frozen=True)
class Captured:
    keyspace: str
    table: str  # keyspace.table
    topic: str
    name: str  # pipeline name, PostgreSQL schema and group suffix

    def worker_config(self, env: dict[str, str], **table: Any) -> dict[str, Any]:
        """A worker config for this table (extra `table` keys go into its table entry)."""
        return {
            "pipeline": self.name,
            "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                      "groupId": f"g-{self.name}", "deadLetterTopic": f"{self.name}.dlq"},
            "postgres": {"dsn": dsn_without_password(env["PG_DSN"]), "schema": self.name},
            "cassandra": stack_cassandra.worker_config(env),
            "tables": [{"topic": self.topic, "source": {"keyspace": self.keyspace, "table": "t"},
                        "target": {"table": "t"}, **table}],
            "batch": {"maxEvents": 500, "maxWaitMs": 200},
            "httpPort": free_port(),
        }  # fmt: skip


def capture(env: dict[str, str], session: Session, prefix: str, columns: str) -> Captured:
    """Keyspace `<prefix>_<random>` with table `t (<columns>) WITH cdc = true`, captured by the
    agent, with its topic and a dead-letter topic created."""
    ks = f"{prefix}_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    session.execute(f"CREATE TABLE {ks}.t ({columns}) WITH cdc = true")

    def captured() -> bool:
        try:
            st = agent_status(env)
        except OSError:  # the agent (re)starting for another test: ask again
            return False
        return f"{ks}.t" in st.get("agent_tables", []) and st.get("phase") == "ready"

    wait_for(captured, 120, "the agent to capture the table")
    topic = f"{topic_prefix(env)}.{ks}.t"
    name = f"{prefix[0]}{uuid.uuid4().hex[:8]}"
    create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], f"{name}.dlq", partitions=1)
    with contextlib.suppress(Exception):  # the agent may have created it already
        create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], topic, partitions=1)
    return Captured(ks, f"{ks}.t", topic, name)


class Sides:
    """A captured table's rows in Cassandra (SELECT) and in PostgreSQL, sorted, for
    `wait_for(sides.equal, ...)`; `seen` keeps the last pair compared for the failure message.
    `cass`/`pg_row` normalise a row of each side (collections come back as different types)."""

    def __init__(
        self, session: Session, pg: psycopg.Connection[Any], cap: Captured, columns: str,
        cass: Callable[[tuple[Any, ...]], tuple[Any, ...]] = tuple,
        pg_row: Callable[[tuple[Any, ...]], tuple[Any, ...]] = tuple,
    ) -> None:  # fmt: skip
        self.session, self.pg, self.cap, self.columns = session, pg, cap, columns
        self.cass_row, self.pg_row = cass, pg_row
        self.seen: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None

    def cassandra(self) -> list[tuple[Any, ...]]:
        rows = self.session.execute(f"SELECT {self.columns} FROM {self.cap.table}")
        return sorted(self.cass_row(tuple(r)) for r in rows)

    def postgres(self) -> list[tuple[Any, ...]]:
        try:
            rows = self.pg.execute(f"SELECT {self.columns} FROM {self.cap.name}.t").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
        return sorted(self.pg_row(tuple(r)) for r in rows)

    def equal(self) -> bool:
        self.seen = (self.cassandra(), self.postgres())
        return self.seen[0] == self.seen[1]

    def wait_equal(self, timeout: float, what: str, logs: Callable[[], str] = str) -> None:
        """Wait until both sides are equal; the failure names both sides as last seen."""
        try:
            wait_for(self.equal, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}: (cassandra, postgres) = {self.seen}\n{logs()[-3000:]}") \
                from None  # fmt: skip
