"""The signals the supervisor reads: Cassandra's schema and write counts, Kafka, cdc_raw.

Cassandra is asked through the node the agent sits beside only (a whitelist policy): the
virtual table `system_views.local_write_latency` is node-local, and that node's writes are the
ones its agent must emit. Kafka high watermarks come from one AdminClient `list_offsets` call for
all table topics (a topic that does not exist yet has emitted nothing).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import WhiteListRoundRobinPolicy
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from cdc_worker.agent.tables import (
    CDC_TABLES_CQL,
    COLUMNS_CQL,
    TableId,
    cdc_tables,
    topic,
    vector_columns,
)

WRITES_CQL = "SELECT keyspace_name, table_name, count FROM system_views.local_write_latency"


class CassandraProbe:
    def __init__(
        self, contact_point: str, username: str = "", password: str = "",
        ca_file: Path | None = None, verify_hostname: bool = True,
    ) -> None:  # fmt: skip
        host, _, port = contact_point.rpartition(":")
        self.host, self.port = host or contact_point, int(port or 9042)
        self.auth = PlainTextAuthProvider(username, password) if username else None
        self.ssl_context: ssl.SSLContext | None = None
        if ca_file is not None:
            self.ssl_context = ssl.create_default_context(cafile=str(ca_file))
            self.ssl_context.check_hostname = verify_hostname
        self._cluster: Cluster | None = None
        self._session: Session | None = None

    def _connect(self) -> Session:
        if self._session is None:
            profile = ExecutionProfile(
                load_balancing_policy=WhiteListRoundRobinPolicy([self.host]), request_timeout=10
            )
            self._cluster = Cluster(
                [self.host],
                port=self.port,
                auth_provider=self.auth,
                ssl_context=self.ssl_context,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                connect_timeout=5,
            )
            self._session = self._cluster.connect()
        return self._session

    def _rows(self, cql: str) -> list[Any]:
        try:
            return list(self._connect().execute(cql))
        except Exception:
            self.close()  # reconnect from scratch next time (node restarted, address changed)
            raise

    def tables(self) -> frozenset[TableId]:
        return cdc_tables(self._rows(CDC_TABLES_CQL))

    def vector_columns(self) -> list[str]:
        return vector_columns(self._rows(COLUMNS_CQL))

    def local_writes(self) -> dict[TableId, int]:
        return {(r.keyspace_name, r.table_name): int(r.count) for r in self._rows(WRITES_CQL)}

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None


class KafkaProbe:
    def __init__(self, conf: dict[str, str]) -> None:
        self.admin = AdminClient(dict(conf))

    def emitted(self, prefix: str, tables: frozenset[TableId]) -> dict[TableId, int | None]:
        """Sum of the high watermarks of each table's topic; None for a missing topic."""
        names = {topic(prefix, t): t for t in tables}
        out: dict[TableId, int | None] = dict.fromkeys(tables)
        if not names:
            return out
        meta = self.admin.list_topics(timeout=10).topics
        request = {
            TopicPartition(name, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
            for name in names
            if name in meta and meta[name].error is None
            for p, part in meta[name].partitions.items()
            if part.leader >= 0  # librdkafka's ListOffsets can crash on an unknown leader
        }
        if not request:
            return out
        for tp, fut in self.admin.list_offsets(request, request_timeout=10).items():
            try:
                offset = int(fut.result(timeout=15).offset)
            except KafkaException:
                continue
            table = names[tp.topic]
            out[table] = (out[table] or 0) + offset
        return out


@dataclass(frozen=True)
class CdcRaw:
    segments: int
    bytes: int
    oldest_age: float


def cdc_raw(directory: Path, now: float | None = None) -> CdcRaw:
    """Commitlog segments waiting in the node's cdc_raw (hard links until the agent deletes them).

    In real-time mode the segment Cassandra is writing is here too, so one or two segments are
    normal; a growing count means the agent is not keeping up (or not running).
    """
    now = time.time() if now is None else now
    segments = []
    try:
        for entry in directory.iterdir():
            if entry.name.startswith("CommitLog-") and entry.name.endswith(".log"):
                try:
                    segments.append(entry.stat())
                except OSError:
                    continue  # deleted by the agent meanwhile
    except OSError:
        return CdcRaw(0, 0, 0.0)
    oldest = min((s.st_mtime for s in segments), default=now)
    return CdcRaw(len(segments), sum(s.st_size for s in segments), max(0.0, now - oldest))
