"""Kafka offsets stored in PostgreSQL, in the same transaction as the rows they produced.

This is what makes the effect exactly-once: a batch's rows and the offsets after
it commit together or not at all, and on partition assignment the consumer
seeks to what is stored here. Offsets only move forward (GREATEST), so a batch
finished by a worker that has just lost the partition cannot move them back.
"""

from __future__ import annotations

import psycopg

from cdc_worker.target import qi


class OffsetStore:
    def __init__(self, schema: str, group: str) -> None:
        self.table = f"{qi(schema)}._cdc_offsets"
        self.schema = schema
        self.group = group

    def ensure(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with conn.transaction():
            # Workers starting together would race on CREATE … IF NOT EXISTS (a unique
            # violation in the catalog): one at a time, under a cluster-wide advisory lock.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc_worker.ddl'))")
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {qi(self.schema)}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (consumer_group text NOT NULL, "
                "topic text NOT NULL, kafka_partition int NOT NULL, next_offset bigint NOT NULL, "
                "updated_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (consumer_group, topic, kafka_partition))"
            )

    def store(
        self, cur: psycopg.Cursor[tuple[object, ...]], next_offsets: dict[tuple[str, int], int]
    ) -> None:
        if not next_offsets:
            return
        cur.executemany(
            f"INSERT INTO {self.table} (consumer_group, topic, kafka_partition, next_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer_group, topic, kafka_partition) "
            f"DO UPDATE SET next_offset = GREATEST({self.table}.next_offset, "
            "EXCLUDED.next_offset), updated_at = now()",
            [(self.group, t, p, o) for (t, p), o in next_offsets.items()],
        )

    def load(
        self, conn: psycopg.Connection[tuple[object, ...]], partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        rows = conn.execute(
            f"SELECT topic, kafka_partition, next_offset FROM {self.table} "
            "WHERE consumer_group = %s AND (topic, kafka_partition) IN "
            "(SELECT * FROM unnest(%s::text[], %s::int[]))",
            (self.group, [t for t, _ in partitions], [p for _, p in partitions]),
        ).fetchall()
        conn.commit()
        return {(str(t), int(str(p))): int(str(o)) for t, p, o in rows}
