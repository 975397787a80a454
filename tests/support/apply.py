"""Run the worker's decode → coalesce → write stages on raw messages, as the consumer does."""

from __future__ import annotations

import psycopg

from cdc_worker.coalesce import coalesce
from cdc_worker.decode import Change, Decoder
from cdc_worker.schema import TableSchema
from cdc_worker.write import TableWriter, WriteResult


def apply_batch(
    conn: psycopg.Connection[tuple[object, ...]],
    writer: TableWriter,
    schema: TableSchema,
    messages: list[bytes],
    now_us: int,
) -> WriteResult:
    # As BatchApplier.decode/prepare: replica copies recognised, each distinct change once.
    dec, changes = Decoder(schema), list[Change]()
    for m in messages:
        ch, fresh = dec.decode(m)
        if fresh:
            changes.append(ch)
    batch = coalesce(schema, changes)
    with conn.transaction(), conn.cursor() as cur:
        return writer.write(cur, batch, now_us)
