"""The insert-only path for new rows (write_new.py) stores exactly what the merge stores.

Two copies of one table in the stack's PostgreSQL take the same random batches: one through
the merge alone, the other with `new_first` (new, alive, unshadowed rows inserted directly,
the merge on the rest). Batches mix writes (null cells, expired and live TTLs, row markers,
negative write times, equal write times with different values) with row, partition and range
deletes, over a key space small enough that later batches meet stored and dead rows. After
every batch both copies hold the same rows, metadata included, in the table and in its dead
and tombstone tables; the direct path must have taken some rows and left others to the merge.
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cdc_worker import tables
from cdc_worker.coalesce import coalesce
from cdc_worker.decode import Change, Kind
from cdc_worker.schema import TableSchema, schema_from_spec
from cdc_worker.target import DeleteMode, Target, qi
from cdc_worker.write import TableWriter

pytestmark = pytest.mark.integration

COLS = {"p": "int", "c": "text", "a": "int", "b": "text", "d": "double", "e": "boolean"}
NOW = 6_000_000
VALUES = {
    "a": lambda r: str(r.randint(-3, 3)),
    "b": lambda r: r.choice(["x", "y", "z"]),
    "d": lambda r: str(r.choice([0.5, 1.5])),
    "e": lambda r: r.choice(["true", "false"]),
}
EXPIRIES = [None, 5_000_000, 9_000_000]  # before and after NOW


def _changes(rng: random.Random, n: int) -> list[Change]:
    out: list[Change] = []
    for _ in range(n):
        key = (str(rng.randint(0, 40)), f"c{rng.randint(0, 4)}")
        ts = rng.choice([-5, 1000, 2000, 3000, 3000, 4000])
        roll = rng.random()
        if roll < 0.8:
            cells: dict[str, tuple[str | None, int | None]] = {}
            for name, make in VALUES.items():
                if rng.random() < 0.6:
                    value = None if rng.random() < 0.15 else make(rng)
                    cells[name] = (value, rng.choice([None, *EXPIRIES]))
            marker = rng.random() < 0.5
            mexp = rng.choice(EXPIRIES) if marker else None
            out.append(Change(Kind.WRITE, ts, key, cells, marker, mexp))
        elif roll < 0.9:
            out.append(Change(Kind.ROW_DELETE, ts, key, {}, False, None))
        elif roll < 0.95:
            out.append(Change(Kind.PARTITION_DELETE, ts, (key[0], None), {}, False, None))
        else:
            lo, hi = f"c{rng.randint(0, 2)}", f"c{rng.randint(2, 4)}"
            pk = (key[0], None)
            bounds = ((lo,), True), ((hi,), rng.random() < 0.5)
            out.append(Change(Kind.RANGE_DELETE, ts, pk, {}, False, None, *bounds))
    return out


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn) as conn:
        yield conn


def _dump(conn: psycopg.Connection[Any], t: Target) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in (t.fq, *((t.dead,) if t.delete_mode is DeleteMode.HARD else ()), t.ptomb, t.rtomb):
        cols = [
            str(r[0])
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attname NOT IN "
                "('_cdc_updated_at', '_cdc_dead_at', '_cdc_recorded_at', '_cdc_deleted_at') "
                "ORDER BY attnum",
                (table,),
            ).fetchall()
        ]
        sel = ", ".join(f"{qi(c)}::text" for c in cols)
        order = ", ".join(str(i + 1) for i in range(len(cols)))
        out[table.split(".")[1]] = conn.execute(
            f"SELECT {sel} FROM {table} ORDER BY {order}"
        ).fetchall()
    return out


@pytest.mark.parametrize("mode", [DeleteMode.HARD, DeleteMode.SOFT])
@pytest.mark.parametrize("token", [False, True])
def test_new_rows_inserted_directly_equal_the_merge(
    pg: psycopg.Connection[Any], mode: DeleteMode, token: bool
) -> None:
    schema: TableSchema = schema_from_spec("ks", "t", ["p"], ["c"], COLS)
    base = f"wn_{uuid.uuid4().hex[:8]}"
    writers: list[TableWriter] = []
    for side in ("merge", "direct"):
        pg.execute(f"CREATE SCHEMA {base}_{side}")
        pg.commit()
        w = tables.prepare(pg, Target(schema, f"{base}_{side}", "t", mode), create=True)
        if token:
            pg.execute(f"ALTER TABLE {w.t.fq} ADD COLUMN _cdc_token bigint")
            pg.commit()
        writers.append(w)
    rng = random.Random(7 if token else 11)
    direct = merged = 0
    try:
        for _ in range(12):
            batch = coalesce(schema, _changes(rng, 60))
            results = []
            for w, new_first in zip(writers, (False, True), strict=True):
                with pg.transaction(), pg.cursor() as cur:
                    cur.execute(f"TRUNCATE {w.stage}")
                    toks = {k[:1]: zlib.crc32(str(k[0]).encode()) for k in batch.rows}
                    tokens = toks if token else None
                    results.append(w.write(cur, batch, NOW, tokens=tokens, new_first=new_first))
            a, b = results
            assert (a.rows, a.live, a.dead) == (b.rows, b.live, b.dead)
            direct += b.new
            merged += b.rows - b.new
            got_a, got_b = _dump(pg, writers[0].t), _dump(pg, writers[1].t)
            assert list(got_a.values()) == list(got_b.values())
        assert direct > 0, "the direct path never took a row"
        assert merged > 0, "the merge was never needed"
    finally:
        pg.rollback()
        for side in ("merge", "direct"):
            pg.execute(f"DROP SCHEMA IF EXISTS {base}_{side} CASCADE")
        pg.commit()
