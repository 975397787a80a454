"""Cassandra rows → `Change`s with Cassandra's own write times → coalesce → the worker's writer.

Repair and backfill never write PostgreSQL directly: each row becomes the
changes the stream would have carried — one WRITE per distinct WRITETIME() with
its cells and their TTL expiry — and those go through `coalesce` and the same
set-based merge as streamed batches, under the same per-table lock. So a
repaired cell can never overwrite a newer streamed one (last-write-wins by
timestamp), and a streamed write that lands later still wins if it is newer.

Three cases need more than Cassandra's cells:
- a cell that is null in Cassandra but set in PostgreSQL: a cell tombstone at
  the stored cell's own time (a deletion wins a tie, `Cells.resolveRegular`);
- a cell that differs although PostgreSQL's time is not older (a hand edit, or
  a collection the stream only saw as deltas): the stored time is dropped
  (compare-and-set on the observed value) so Cassandra's cell wins the merge;
- a row absent in Cassandra: a row tombstone at the newest time the stored row
  carries, which removes exactly what PostgreSQL holds and nothing newer that
  Cassandra might still hold (a tombstone at the scan time could shadow a write
  with an older client timestamp that reached Cassandra after the read).
A row with no live cell exists in Cassandra only through its row marker, whose
time CQL does not expose: it gets a marker at the time the row was read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc_worker.coalesce import Coalesced, RowState, coalesce, column_types
from cdc_worker.decode import Change, Kind
from cdc_worker.scan.compare import Diff
from cdc_worker.scan.pgside import Conn, PgSide
from cdc_worker.scan.reader import ScanRow
from cdc_worker.scan.values import pg_text, pg_text_fn
from cdc_worker.schema import TableSchema
from cdc_worker.write import TableWriter, Tokens

Key = tuple[str | None, ...]
Cursor = psycopg.Cursor[tuple[Any, ...]]


def row_key(schema: TableSchema, r: ScanRow) -> Key:
    return tuple(pg_text(c.cql, v) for c, v in zip(schema.primary_key, r.key, strict=True))


def row_changes(schema: TableSchema, r: ScanRow, key: Key | None = None) -> list[Change]:
    """The writes that recreate a Cassandra row: one per distinct write time."""
    key = key if key is not None else row_key(schema, r)
    by_ts: dict[int, dict[str, tuple[str | None, int | None]]] = {}
    for c in schema.values:
        value, wt, exp = r.cells.get(c.name, (None, None, None))
        if value is None or wt is None:
            continue
        text = pg_text(c.cql, value)
        if text is not None:
            by_ts.setdefault(wt, {})[c.name] = (text, exp)
    out = [Change(Kind.WRITE, ts, key, cells, False, None) for ts, cells in by_ts.items()]
    if not out:
        out.append(Change(Kind.WRITE, r.read_us, key, {}, True, None))
    return out


def part_texts(schema: TableSchema, key: Key) -> list[str]:
    return [str(k) for k in key[: len(schema.partition_key)]]


class RowConverter:
    """`row_key`/`row_changes` for one schema, each column's converter chosen once
    (`values.pg_text_fn`): the same results, without per-cell type dispatch (backfill's path)."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.key_fns = [pg_text_fn(c.cql) for c in schema.primary_key]
        self.val_fns = [(c.name, pg_text_fn(c.cql)) for c in schema.values]

    def key(self, r: ScanRow) -> Key:
        return tuple([f(v) for f, v in zip(self.key_fns, r.key, strict=True)])

    def changes(self, r: ScanRow, key: Key) -> list[Change]:
        """`row_changes`, from `state`: one WRITE per distinct write time."""
        st = self.state(r)
        if not st.cells:
            return [Change(Kind.WRITE, r.read_us, key, {}, True, None)]
        by_ts: dict[int, dict[str, tuple[str | None, int | None]]] = {}
        for name, (wt, text, exp) in st.cells.items():
            by_ts.setdefault(wt, {})[name] = (text, exp)
        return [Change(Kind.WRITE, ts, key, cells, False, None) for ts, cells in by_ts.items()]

    def state(self, r: ScanRow) -> RowState:
        """What `coalesce` makes of `changes(r, key)` alone, built directly: a row read once
        has each cell once, so no rule of coalesce has anything to decide."""
        cells: dict[str, tuple[int, str | None, int | None]] = {}
        rcells = r.cells
        for name, fn in self.val_fns:
            cell = rcells.get(name)
            if cell is None:
                continue
            value, wt, exp = cell
            if value is None or wt is None:
                continue
            text = fn(value)
            if text is not None:
                cells[name] = (wt, text, exp)
        if not cells:
            return RowState(marker_ts=r.read_us)
        return RowState(cells)


@dataclass(slots=True)
class Prepared:
    """A backfill chunk ready for PostgreSQL: the coalesced batch, and its COPY text with each
    row's partition token (`_cdc_token`)."""

    batch: Coalesced
    rendered: str
    tokens: Tokens
    rows: int


def prepare_rows(conv: RowConverter, writer: TableWriter, rows: Sequence[ScanRow]) -> Prepared:
    """A backfill chunk's Python half (no PostgreSQL): rows → coalesced batch → COPY text.

    Each row's state is built directly (`RowConverter.state`, equal to coalescing its changes:
    a unit test holds them equal); a key met twice, which one token-range read never yields,
    goes through `Coalesced.add` like streamed changes."""
    schema = writer.t.schema
    batch = Coalesced(column_types(schema))
    states = batch.rows
    npart = len(schema.partition_key)
    tokens: Tokens = {}
    for r in rows:
        key = conv.key(r)
        if key in states:
            for ch in conv.changes(r, key):
                batch.add(ch, npart)
        else:
            states[key] = conv.state(r)
            batch.events += 1
        tokens[key[:npart]] = r.token
    return Prepared(batch, writer.render(batch, tokens), tokens, len(rows))


def write_prepared(
    conn: Conn, writer: TableWriter, p: Prepared, now_us: int,
    also: Callable[[Cursor], None] | None = None, timings: dict[str, float] | None = None,
) -> int:  # fmt: skip
    """A backfill chunk's PostgreSQL half: the worker's merge of the prepared rows in one
    transaction (with `also`, e.g. the scan's checkpoint); returns the rows written.

    The commit does not wait for the WAL flush (`synchronous_commit = off`, this transaction
    only): a crash can lose the last chunks, but only together with their checkpoint (same
    transaction), so a resumed backfill writes them again; nothing else reads them as durable.
    """
    tm = timings if timings is not None else {}
    t0 = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(f"TRUNCATE {writer.stage}")
        if p.batch.events:
            # The tokens are staged with the rows (COPY) and the merge stores them: an UPDATE of
            # the table afterwards wrote every new row twice (a third of PostgreSQL's time), an
            # UPDATE of the staging table after the COPY 17 %.
            writer.write(cur, p.batch, now_us, p.rendered, tokens=p.tokens, new_first=True)
        t1 = time.perf_counter()
        if also is not None:
            also(cur)
    t3 = time.perf_counter()
    tm["postgresMerge"] = tm.get("postgresMerge", 0.0) + t1 - t0
    tm["postgresCommit"] = tm.get("postgresCommit", 0.0) + t3 - t1
    return p.rows


def repair(conn: Conn, writer: TableWriter, pg: PgSide, diffs: Sequence[Diff], now_us: int) -> int:
    """Make the rows of `diffs` equal to Cassandra through the merge; returns rows repaired."""
    schema = writer.t.schema
    target_of = {c.source: c.target for c in writer.vals}
    index = {c.source: i for i, c in enumerate(writer.vals)}
    changes: list[Change] = []
    forgets: list[tuple[tuple[str, ...], str, int]] = []
    parts: list[list[str]] = []
    toks: list[int] = []
    for d in diffs:
        if d.cass is None:
            assert d.pg is not None
            key: Key = d.pg.key_pg
            changes.append(Change(Kind.ROW_DELETE, d.pg.newest, key, {}, False, None))
            continue
        key = row_key(schema, d.cass.row)
        changes += row_changes(schema, d.cass.row, key)
        parts.append(part_texts(schema, key))
        toks.append(d.token)
        if d.pg is None:
            continue
        for col in d.columns:
            stored = d.pg.ts[index[col]]
            value, wt, _ = d.cass.row.cells.get(col, (None, None, None))
            if value is None or d.cass.fields[index[col]] is None:
                changes.append(
                    Change(Kind.WRITE, stored or 0, key, {col: (None, None)}, False, None)
                )
            elif stored is not None and (wt is None or stored >= wt):
                forgets.append((d.pg.key_pg, target_of[col], stored))
    _merge(conn, writer, pg, changes, forgets, now_us)
    pg.set_tokens(conn, parts, toks)
    return len(diffs)


def _merge(
    conn: Conn, writer: TableWriter, pg: PgSide, changes: list[Change],
    forgets: list[tuple[tuple[str, ...], str, int]], now_us: int,
) -> None:  # fmt: skip
    if not changes:
        return
    batch = coalesce(writer.t.schema, changes)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"TRUNCATE {writer.stage}")
        if forgets:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (writer.t.lock_key,))
            for key_pg, column, observed in forgets:
                pg.forget(cur, key_pg, column, observed)
        writer.write(cur, batch, now_us)
