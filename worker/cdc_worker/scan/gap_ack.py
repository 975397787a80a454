"""Acknowledging a table's data gaps once a repair has covered them (docs/scan.md).

A data gap (gaps.py) is a run of events Kafka deleted before the workers applied them. Their
writes are still in Cassandra, so a repair that reads every token range of the table *after*
the gap was detected restores what they carried; only then may the gap be acknowledged
(`acknowledged_at`), which clears `DataGap` from the workers' readiness and the table's status.

A repair Job has several slices (Indexed Job pods) that end in any order and may be retried, so
each successful slice records itself under the run's id in `<schema>._cdc_gap_repairs`,
together with the time its pass over its sub-ranges began (its checkpoint's `started_at`: a
pod that resumed a checkpoint read the earlier sub-ranges at that earlier time). The slice
that completes the set, under an advisory lock per run, acknowledges the gaps of the table's
topic detected before the earliest of those times. A gap detected later stays open (its events
may have been lost after a range was read), and the operator starts another repair for it.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import structlog

from cdc_worker.config import TableConfig, WorkerConfig
from cdc_worker.target import qi

log = structlog.get_logger("cdc_worker.scan")

RUNS_DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}._cdc_gap_repairs (run text NOT NULL, "
    "table_name text NOT NULL, slice_index int NOT NULL, slice_count int NOT NULL, "
    "started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (run, slice_index))"
)


def slice_repaired(
    conn: psycopg.Connection[tuple[object, ...]], cfg: WorkerConfig, tc: TableConfig, run: str,
    slice_index: int, slice_count: int,
) -> int:  # fmt: skip
    """Record a successfully repaired slice; when it completes the run, acknowledge the gaps.

    Returns the number of gaps acknowledged (0 until the run's last slice)."""
    gaps_schema = qi(cfg.postgres.schema_)
    pg_schema = tc.target.schema_ or cfg.postgres.schema_
    table_fq = f"{qi(pg_schema)}.{qi(tc.target.table or tc.source.table)}"
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc_worker.ddl'))")
        conn.execute(RUNS_DDL.format(schema=gaps_schema))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cdc_worker.gap_ack:{run}",))
        row = conn.execute(
            f"SELECT started_at FROM {qi(pg_schema)}._cdc_scan_checkpoints WHERE kind = 'repair' "
            "AND table_name = %s AND slice_index = %s AND slice_count = %s AND done",
            (table_fq, slice_index, slice_count),
        ).fetchone()
        if row is None:
            raise RuntimeError(f"no finished repair checkpoint for slice {slice_index}/"
                               f"{slice_count} of {table_fq}")  # fmt: skip
        conn.execute(
            f"INSERT INTO {gaps_schema}._cdc_gap_repairs (run, table_name, slice_index, "
            "slice_count, started_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run, slice_index) "
            "DO UPDATE SET started_at = EXCLUDED.started_at, finished_at = now()",
            (run, table_fq, slice_index, slice_count, row[0]),
        )
        done, since = conn.execute(
            f"SELECT count(*), min(started_at) FROM {gaps_schema}._cdc_gap_repairs "
            "WHERE run = %s AND table_name = %s AND slice_count = %s",
            (run, table_fq, slice_count),
        ).fetchone() or (0, None)
        if int(str(done)) < slice_count or not isinstance(since, datetime):
            log.info("gap_repair_slice_done", run=run, slice=f"{slice_index}/{slice_count}",
                     slices_done=int(str(done)))  # fmt: skip
            return 0
        acked = conn.execute(
            f"UPDATE {gaps_schema}._cdc_gaps SET acknowledged_at = now() "
            "WHERE consumer_group = %s AND topic = %s AND acknowledged_at IS NULL "
            "AND detected_at < %s RETURNING kafka_partition, from_offset, to_offset",
            (cfg.kafka.group_id, tc.topic, since),
        ).fetchall()
        still = conn.execute(
            f"SELECT count(*) FROM {gaps_schema}._cdc_gaps WHERE consumer_group = %s "
            "AND topic = %s AND acknowledged_at IS NULL",
            (cfg.kafka.group_id, tc.topic),
        ).fetchone()
    log.info("gaps_acknowledged", run=run, topic=tc.topic, acknowledged=len(acked),
             still_open=int(str(still[0])) if still else 0,
             repaired_since=since.isoformat(),
             gaps=[f"[{p}] {f}..{'' if t is None else int(str(t)) - 1}"
                   for p, f, t in acked])  # fmt: skip
    return len(acked)
