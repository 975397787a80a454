"""Coalesce a batch of changes into one state per row, with Cassandra's merge rules.

The rules are those of Cassandra's own reconciliation, so the order in which
replica copies arrive cannot change the outcome:
- each cell keeps the write with the highest timestamp; equal timestamps follow
  `Cells.resolveRegular` (tiebreak.py): tombstone, then expiring cell, then the
  later expiry, then the greater serialized value (bytes compared unsigned);
- a row, partition or range tombstone at T removes every cell and row marker
  written at or before T, and shadows such writes arriving later;
- a row exists while it has a live cell or a live row marker (from INSERT); of
  two markers the one that `LivenessInfo.supersedes` the other is kept.
Partition and range tombstones are kept per partition and applied to the batch's
rows once all changes are in, which makes the result independent of order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdc_worker.decode import Bound, Change, Kind
from cdc_worker.ranges import covers
from cdc_worker.schema import TableSchema
from cdc_worker.tiebreak import cell_rank, marker_key, serialize
from cdc_worker.typemap import CqlType

Cell = tuple[int, str | None, int | None]  # (write ts µs, PG text or None, expiry µs or None)
Key = tuple[str | None, ...]


def cell_wins(new: Cell, old: Cell, cql: CqlType) -> bool:
    """Whether `new` replaces `old` (`Cells.resolveRegular`; the value only at a full tie)."""
    if new[0] != old[0]:
        return new[0] > old[0]
    return tie_wins(new, old, cql)


def tie_wins(new: Cell, old: Cell, cql: CqlType) -> bool:
    rn, ro = cell_rank(new[1], new[2]), cell_rank(old[1], old[2])
    if rn != ro:
        return rn > ro
    if (new[2] or 0) != (old[2] or 0):
        return (new[2] or 0) > (old[2] or 0)
    if new[1] is None or old[1] is None or new[1] == old[1]:
        return False
    return serialize(cql, new[1]) > serialize(cql, old[1])


@dataclass(slots=True)
class RowState:
    cells: dict[str, Cell] = field(default_factory=dict)
    marker_ts: int | None = None
    marker_exp: int | None = None
    del_ts: int | None = None

    def write(self, ch: Change, types: dict[str, CqlType]) -> None:
        ts = ch.ts
        if self.del_ts is not None and ts <= self.del_ts:
            return
        cells = self.cells
        for name, (value, exp) in ch.cells.items():
            new = (ts, value, exp)
            old = cells.get(name)
            if old is None or ts > old[0] or (ts == old[0] and tie_wins(new, old, types[name])):
                cells[name] = new
        if ch.row_marker and (
            self.marker_ts is None
            or marker_key(ts, ch.marker_expiry) > marker_key(self.marker_ts, self.marker_exp)
        ):
            self.marker_ts, self.marker_exp = ts, ch.marker_expiry

    def delete(self, ts: int) -> None:
        if self.del_ts is not None and ts <= self.del_ts:
            return
        self.del_ts = ts
        self.cells = {n: c for n, c in self.cells.items() if c[0] > ts}
        if self.marker_ts is not None and self.marker_ts <= ts:
            self.marker_ts = self.marker_exp = None


@dataclass(slots=True)
class RangeTombstone:
    start: Bound | None
    end: Bound | None
    ts: int


@dataclass(slots=True)
class Coalesced:
    """The net effect of a batch on one table."""

    types: dict[str, CqlType] = field(default_factory=dict)  # column -> CQL type, for ties
    rows: dict[Key, RowState] = field(default_factory=dict)
    partition_dels: dict[Key, int] = field(default_factory=dict)
    range_dels: dict[Key, list[RangeTombstone]] = field(default_factory=dict)
    events: int = 0

    def add(self, ch: Change, pk_len: int) -> None:
        self.events += 1
        kind = ch.kind
        if kind is Kind.WRITE:
            row = self.rows.get(ch.key)
            if row is None:
                row = self.rows[ch.key] = RowState()
            row.write(ch, self.types)
        elif kind is Kind.ROW_DELETE:
            row = self.rows.get(ch.key)
            if row is None:
                row = self.rows[ch.key] = RowState()
            row.delete(ch.ts)
        elif kind is Kind.PARTITION_DELETE:
            pk = ch.key[:pk_len]
            if ch.ts > self.partition_dels.get(pk, -1):
                self.partition_dels[pk] = ch.ts
        else:
            pk = ch.key[:pk_len]
            tombs = self.range_dels.setdefault(pk, [])
            same = next(
                (t for t in tombs if (t.start, t.end) == (ch.range_start, ch.range_end)), None
            )
            if same is None:
                tombs.append(RangeTombstone(ch.range_start, ch.range_end, ch.ts))
            elif ch.ts > same.ts:
                same.ts = ch.ts

    def apply_tombstones(
        self,
        schema: TableSchema,
        partition_dels: dict[Key, int],
        range_dels: dict[Key, list[RangeTombstone]],
    ) -> None:
        """Apply partition and range tombstones to every row of the batch they cover."""
        if not partition_dels and not range_dels:
            return
        pk_len = len(schema.partition_key)
        clustering = schema.clustering
        for key, row in self.rows.items():
            pk = key[:pk_len]
            ts = partition_dels.get(pk)
            if ts is not None:
                row.delete(ts)
            for t in range_dels.get(pk, ()):
                if (row.del_ts is None or t.ts > row.del_ts) and covers(
                    clustering, key[pk_len:], t.start, t.end
                ):
                    row.delete(t.ts)


def column_types(schema: TableSchema) -> dict[str, CqlType]:
    return {c.name: c.cql for c in schema.values}


def coalesce(schema: TableSchema, changes: list[Change]) -> Coalesced:
    out = Coalesced(column_types(schema))
    pk_len = len(schema.partition_key)
    for ch in changes:
        out.add(ch, pk_len)
    out.apply_tombstones(schema, out.partition_dels, out.range_dels)
    return out
