"""Data gaps: events Kafka no longer has (or never had for us) between two positions.

A worker down for longer than the topic's retention, or a topic deleted and re-created under
the same name, leaves the stored offset outside what Kafka holds. Skipping silently would make
PostgreSQL differ from Cassandra with nobody told. So the consumer never resets by itself
(`auto.offset.reset=error`); the offset is checked against the partition's watermarks on
assignment (and whenever Kafka reports it out of range), the gap is recorded in PostgreSQL
(`<schema>._cdc_gaps`, durable) before consumption moves on, counted in metrics, and reported:
readiness fails with reason `DataGap` and the tables' status says `DataGap` until the gap is
acknowledged (after a verify/repair: `UPDATE <schema>._cdc_gaps SET acknowledged_at = now()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cdc_worker.target import qi


@dataclass(frozen=True)
class Gap:
    topic: str
    partition: int
    from_offset: int  # the first event not applied
    to_offset: int | None  # where consumption resumes (None: unknown, a re-created topic)
    reason: str  # "BelowLowWatermark" | "AboveHighWatermark"

    @property
    def events(self) -> int:
        return max(0, self.to_offset - self.from_offset) if self.to_offset is not None else 0

    def describe(self) -> str:
        span = (f"offsets {self.from_offset}..{self.to_offset - 1}" if self.to_offset is not None
                else f"from offset {self.from_offset}")  # fmt: skip
        return f"{self.topic}[{self.partition}] {span} were never applied ({self.reason})"


def check(stored: int, low: int, high: int, topic: str, partition: int) -> tuple[int, Gap | None]:
    """Where to resume for a stored offset, and the gap if Kafka no longer holds it."""
    if stored < low:
        return low, Gap(topic, partition, stored, low, "BelowLowWatermark")
    if stored > high:
        # The topic was truncated or re-created: everything it holds now is new to us.
        return low, Gap(topic, partition, stored, None, "AboveHighWatermark")
    return stored, None


class GapStore:
    def __init__(self, schema: str, group: str) -> None:
        self.table = f"{qi(schema)}._cdc_gaps"
        self.group = group

    def ensure(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with conn.transaction():
            # Workers starting together would race on CREATE … IF NOT EXISTS (a unique
            # violation in the catalog): one at a time, under a cluster-wide advisory lock.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc_worker.ddl'))")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (consumer_group text NOT NULL, "
                "topic text NOT NULL, kafka_partition int NOT NULL, from_offset bigint NOT NULL, "
                "to_offset bigint, reason text NOT NULL, "
                "detected_at timestamptz NOT NULL DEFAULT now(), acknowledged_at timestamptz, "
                "PRIMARY KEY (consumer_group, topic, kafka_partition, from_offset))"
            )

    def record(self, conn: psycopg.Connection[tuple[object, ...]], gaps: list[Gap]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.table} (consumer_group, topic, kafka_partition, from_offset, "
                "to_offset, reason) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(self.group, g.topic, g.partition, g.from_offset, g.to_offset, g.reason)
                 for g in gaps],
            )  # fmt: skip

    def open(self, conn: psycopg.Connection[tuple[object, ...]]) -> list[Gap]:
        rows = conn.execute(
            f"SELECT topic, kafka_partition, from_offset, to_offset, reason FROM {self.table} "
            "WHERE consumer_group = %s AND acknowledged_at IS NULL ORDER BY detected_at",
            (self.group,),
        ).fetchall()
        conn.commit()
        return [Gap(str(t), int(str(p)), int(str(f)), None if o is None else int(str(o)), str(r))
                for t, p, f, o, r in rows]  # fmt: skip
