"""Housekeeping: expire TTL'd cells, and forget tombstones after the grace period.

Expiry: rows whose `_cdc_next_exp` has passed are re-merged with no new cells,
which nulls expired cells and deletes (or soft-deletes) rows left with nothing
live; `_cdc_next_exp` is indexed, so this touches only expiring rows.
Grace: like Cassandra's gc_grace_seconds, tombstones (dead rows, partition and
range tombstones) are dropped once older than the grace period; a write older
than a forgotten tombstone that arrives after that could resurrect data, as it
could in Cassandra.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from cdc_worker.apply import BatchApplier

PURGE_EVERY_S = 600.0
SWEEP_LIMIT = 10_000


class Sweeper:
    def __init__(self, applier: BatchApplier, grace_seconds: int) -> None:
        self.applier = applier
        self.grace = grace_seconds
        self.last_purge = 0.0

    def run(self, now_us: int | None = None) -> int:
        """One pass over every table, on the applier's control connection."""
        conn: psycopg.Connection[tuple[Any, ...]] = self.applier.control_connection()
        now = now_us if now_us is not None else int(time.time() * 1_000_000)
        expired = 0
        for topic, rt in self.applier.tables.items():
            self.applier.ensure_staging(conn, topic)
            with conn.transaction(), conn.cursor() as cur:
                expired += rt.writer.sweep(cur, now, SWEEP_LIMIT)
        if time.monotonic() - self.last_purge >= PURGE_EVERY_S:
            for rt in self.applier.tables.values():
                with conn.transaction(), conn.cursor() as cur:
                    rt.writer.purge(cur, self.grace)
            self.last_purge = time.monotonic()
        return expired
