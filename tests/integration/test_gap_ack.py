"""Acknowledging data gaps after a repair, against the stack's PostgreSQL (scan/gap_ack.py).

The slices of a repair run finish in any order: nothing is acknowledged until the last one;
then exactly the gaps of the table's topic (and consumer group) detected before the earliest
slice began are; a gap detected after that stays open, and another run acknowledges it. A
slice without a finished repair checkpoint refuses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from cdc_worker.config import WorkerConfig
from cdc_worker.gaps import Gap, GapStore
from cdc_worker.scan.gap_ack import slice_repaired
from cdc_worker.scan.pgside import CHECKPOINTS_DDL

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(stack: Callable[..., dict[str, str]]) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    env = stack("postgres")
    conn = psycopg.connect(env["PG_DSN"], autocommit=True)
    schema = f"gapack_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    yield conn, schema
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


def _cfg(schema: str) -> WorkerConfig:
    return WorkerConfig.model_validate({
        "pipeline": "p",
        "kafka": {"bootstrapServers": "k:9092", "groupId": "g1", "deadLetterTopic": "dlq"},
        "postgres": {"host": "pg", "database": "cdc", "schema": schema},
        "tables": [{"topic": "p.ks.t", "source": {"keyspace": "ks", "table": "t"}},
                   {"topic": "p.ks.u", "source": {"keyspace": "ks", "table": "u"}}],
    })  # fmt: skip


def test_the_last_slice_acknowledges_the_gaps_detected_before_the_run(
    pg: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = pg
    cfg = _cfg(schema)
    store = GapStore(schema, "g1")
    store.ensure(conn)
    store.record(conn, [Gap("p.ks.t", 0, 100, 150, "BelowLowWatermark"),
                        Gap("p.ks.t", 1, 7, None, "AboveHighWatermark"),
                        Gap("p.ks.u", 0, 5, 9, "BelowLowWatermark")])  # fmt: skip
    GapStore(schema, "other-group").record(conn, [Gap("p.ks.t", 0, 1, 2, "BelowLowWatermark")])
    conn.execute(CHECKPOINTS_DDL.format(schema=schema))

    def checkpoint(i: int, n: int, kind: str = "repair", done: bool = True) -> None:
        conn.execute(
            f"INSERT INTO {schema}._cdc_scan_checkpoints (kind, table_name, slice_index, "
            "slice_count, plan, ranges, done) VALUES (%s, %s, %s, %s, 'x', 4, %s) "
            "ON CONFLICT (kind, table_name, slice_index, slice_count) DO UPDATE SET "
            "done = EXCLUDED.done, started_at = now()",
            (kind, f'"{schema}"."t"', i, n, done),
        )

    def open_gaps() -> list[tuple[str, str, int, int]]:
        return conn.execute(
            f"SELECT consumer_group, topic, kafka_partition, from_offset FROM {schema}._cdc_gaps "
            "WHERE acknowledged_at IS NULL ORDER BY 1, 2, 3",
        ).fetchall()

    table = cfg.tables[0]
    checkpoint(0, 3)
    checkpoint(1, 3)
    checkpoint(2, 3, done=False)
    checkpoint(2, 3, kind="verify")  # a verify's checkpoint is not a repair
    with pytest.raises(RuntimeError, match="no finished repair checkpoint for slice 2/3"):
        slice_repaired(conn, cfg, table, "r1", 2, 3)
    assert slice_repaired(conn, cfg, table, "r1", 1, 3) == 0
    # Slice 1 again (a retried Pod): still one of three.
    assert slice_repaired(conn, cfg, table, "r1", 1, 3) == 0
    # A gap found while the run was under way (after its slices began).
    store.record(conn, [Gap("p.ks.t", 2, 30, 40, "BelowLowWatermark")])
    checkpoint(2, 3)  # slice 2's pass began after that gap: the earliest start still counts
    assert slice_repaired(conn, cfg, table, "r1", 0, 3) == 0
    assert len(open_gaps()) == 5
    assert slice_repaired(conn, cfg, table, "r1", 2, 3) == 2
    assert open_gaps() == [("g1", "p.ks.t", 2, 30), ("g1", "p.ks.u", 0, 5),
                           ("other-group", "p.ks.t", 0, 1)]  # fmt: skip
    # The next run, which began after it, covers the late gap.
    for i in range(3):
        checkpoint(i, 3)
    assert [slice_repaired(conn, cfg, table, "r2", i, 3) for i in (2, 0, 1)] == [0, 0, 1]
    assert open_gaps() == [("g1", "p.ks.u", 0, 5), ("other-group", "p.ks.t", 0, 1)]
