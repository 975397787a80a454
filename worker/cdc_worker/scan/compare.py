"""Compare one token sub-range with PostgreSQL: digests first, Merkle-style drill-down, rows last.

The Cassandra rows of a sub-range are in memory (they were read once); the
PostgreSQL side answers digests in SQL. Equal digests end the work for the
range without moving a PostgreSQL row into Python. Unequal ones are halved by
token and each half compared again, recursing only into halves that differ,
until a half holds at most `leaf_rows` rows on each side; only then are the
PostgreSQL rows fetched and matched with Cassandra's by key. A handful of
drifted rows among millions costs O(log n) digest queries each.

The in-flight rule: a difference whose newest write time (either side) is
newer than the read time minus `lag`, or which involves a cell expiring within
`lag` of it, may just be an event still on its way through Kafka; it is kept
aside and re-checked later (`recheck`) before it counts. A deletion has no time
CQL can read (a SELECT shows no tombstone, only the absence it causes), so a
row or a cell that PostgreSQL holds and Cassandra does not is also kept aside,
and counts only if it still differs `lag` after it was first seen with nothing
of that row applied in between (`in_flight`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc_worker.scan.digest import Digest, row_hash
from cdc_worker.scan.pgside import Conn, PgRow, PgSide
from cdc_worker.scan.reader import ScanRow, ValueRows
from cdc_worker.scan.ring import TokenRange
from cdc_worker.scan.values import canon_fn
from cdc_worker.target import Target


@dataclass(slots=True)
class CRow:
    """A Cassandra row in digest form."""

    row: ScanRow
    key_text: str
    fields: tuple[str | None, ...]
    hash: int
    newest: int


@dataclass(slots=True)
class Diff:
    token: int
    key_text: str
    cass: CRow | None  # None: absent in Cassandra
    pg: PgRow | None  # None: absent in PostgreSQL
    columns: list[str] = field(default_factory=list)  # differing value columns (source names)
    seen: int = 0  # µs: when this difference was first read (set when it is kept aside)

    @property
    def newest(self) -> int:
        return max(self.cass.newest if self.cass else 0, self.pg.newest if self.pg else 0)


class Comparer:
    def __init__(self, target: Target, pg: PgSide, leaf_rows: int = 64, lag_us: int = 0) -> None:
        self.t = target
        self.pg = pg
        self.leaf_rows = leaf_rows
        self.lag_us = lag_us
        self.keys = [c.col for c in target.key_columns]
        self.vals = target.value_columns
        # A Cassandra row with no live replicated cell exists only through its row marker,
        # which the worker holds when every column is replicated; otherwise it is ambiguous.
        self.all_columns = len(self.vals) == len(target.schema.values)
        self._key_fns = [canon_fn(c.cql) for c in self.keys]
        self._val_fns = [(c.source, canon_fn(c.col.cql)) for c in self.vals]
        self.digest_queries = 0

    def canon_row(self, r: ScanRow, now_us: int) -> CRow | None:
        ks = [f(v) or "" for f, v in zip(self._key_fns, r.key, strict=True)]
        key = "".join([f"{len(s)}:{s}" for s in ks])
        fields: list[str | None] = []
        parts = [key]
        newest = 0
        near = False
        lag = self.lag_us
        cells = r.cells
        for source, fn in self._val_fns:
            cell = cells.get(source)
            if cell is None:
                fields.append(None)
                parts.append("~")
                continue
            value, wt, exp = cell
            if exp is not None:
                if abs(exp - now_us) <= lag:
                    near = True
                if exp <= now_us:
                    value = None
            s = None if value is None else fn(value)
            fields.append(s)
            if s is None:
                parts.append("~")
            else:
                parts.append(f"{len(s)}:{s}")
            if value is not None and wt is not None and wt > newest:
                newest = wt
        if not self.all_columns and all(f is None for f in fields):
            return None
        return CRow(r, key, tuple(fields), row_hash("".join(parts)), now_us if near else newest)

    def canon_rows(self, rows: Sequence[ScanRow], now_us: int) -> list[CRow]:
        return [c for c in (self.canon_row(x, now_us) for x in rows) if c is not None]

    def canon_values(self, vr: ValueRows, names: Sequence[str]) -> list[CRow]:
        """`canon_rows` of values-only rows (`Reader.read_value_ranges`, value columns in
        `names` order), straight from the driver's tuples. Without write times or expiries
        nothing is near expiring and nothing is newer than the read: `newest` is 0, and each
        CRow's `row` holds the token and key only (a difference is re-read in full)."""
        nk = len(self.keys)
        at = {n: 1 + nk + i for i, n in enumerate(names)}
        vals = [(at.get(source, -1), fn) for source, fn in self._val_fns]
        key_fns = self._key_fns
        every = self.all_columns
        no_cells: dict[str, Any] = {}
        out: list[CRow] = []
        for row in vr.rows:
            key = row[1 : 1 + nk]
            ks = [f(v) or "" for f, v in zip(key_fns, key, strict=True)]
            key_text = "".join([f"{len(s)}:{s}" for s in ks])
            fields = tuple([None if i < 0 or (v := row[i]) is None else fn(v) for i, fn in vals])
            if not every and all(f is None for f in fields):
                continue
            text = key_text + "".join(["~" if f is None else f"{len(f)}:{f}" for f in fields])
            out.append(CRow(ScanRow(row[0], key, no_cells, vr.read_us), key_text, fields,
                            row_hash(text), 0))  # fmt: skip
        return out

    def compare(
        self, conn: Conn, r: TokenRange, rows: Sequence[ScanRow], now_us: int
    ) -> list[Diff]:
        return self._drill(conn, r, self.canon_rows(rows, now_us), now_us, None)

    def compare_canon(
        self, conn: Conn, r: TokenRange, crows: list[CRow], now_us: int, pg_digest: Digest
    ) -> list[Diff]:
        """`compare` with the Cassandra rows already in digest form and PostgreSQL's digest
        of `r` already known (computed for many ranges in one query, `PgSide.digests`)."""
        return self._drill(conn, r, crows, now_us, pg_digest)

    def _drill(
        self, conn: Conn, r: TokenRange, crows: list[CRow], now_us: int, pg_d: Digest | None
    ) -> list[Diff]:
        if pg_d is None:
            pg_d = self.pg.digest(conn, r, now_us)
            self.digest_queries += 1
        if Digest.of(c.hash for c in crows) == pg_d:
            return []
        halves = r.halves()
        if halves is None or max(pg_d.count, len(crows)) <= self.leaf_rows:
            return self.leaf(conn, r, crows, now_us)
        out: list[Diff] = []
        for h in halves:
            out += self._drill(conn, h, [c for c in crows if h.contains(c.row.token)], now_us, None)
        return out

    def leaf(self, conn: Conn, r: TokenRange, crows: list[CRow], now_us: int) -> list[Diff]:
        """Row-level comparison: the PostgreSQL rows of `r` against Cassandra's, by key."""
        pg_rows = {p.key_text: p for p in self.pg.rows(conn, r, now_us, self.lag_us)}
        out: list[Diff] = []
        for c in crows:
            p = pg_rows.pop(c.key_text, None)
            if p is None:
                out.append(Diff(c.row.token, c.key_text, c, None))
            elif p.hash != c.hash:
                cols = [v.source for v, a, b in zip(self.vals, c.fields, p.fields, strict=True)
                        if a != b]  # fmt: skip
                out.append(Diff(c.row.token, c.key_text, c, p, cols))
        out += [Diff(p.token, p.key_text, None, p) for p in pg_rows.values()]
        return out

    def recheck(self, conn: Conn, reader: Any, diffs: Sequence[Diff], now_us: int) -> list[Diff]:
        """Compare the rows of `diffs` afresh from both sides; return those still differing."""
        out: list[Diff] = []
        for tok in sorted({d.token for d in diffs}):
            r = TokenRange(tok - 1, tok)
            keys = {d.key_text for d in diffs if d.token == tok}
            fresh = [self.canon_row(x, now_us) for x in reader.read(r)]
            found = self.leaf(conn, r, [c for c in fresh if c is not None], now_us)
            out += [d for d in found if d.key_text in keys]
        return out

    def in_flight(self, d: Diff, read_us: int, first: Diff | None = None) -> bool:
        """Whether `d`, read at `read_us`, may still be on its way. `first`: the same row's
        difference when it was first seen (`d` is a re-check); None: this is the first.

        A deletion counts once it has been seen `lag` ago and PostgreSQL's row has not changed
        since: the deletion happened before it was first seen, and in `lag` the pipeline
        applied nothing of that row (a row deleted again after being re-inserted meanwhile
        shows the re-insert in PostgreSQL, so it stays in flight)."""
        if d.newest > read_us - self.lag_us:
            return True
        if not self.deletion(d):
            return False
        if first is None or first.seen > read_us - self.lag_us:
            return True
        return (d.pg.newest if d.pg else 0) != (first.pg.newest if first.pg else 0)

    def deletion(self, d: Diff) -> bool:
        """PostgreSQL holds a row or a value Cassandra does not: a deletion of unknown time."""
        if d.cass is None:
            return True
        if d.pg is None:
            return False
        return any(
            a is None and b is not None for a, b in zip(d.cass.fields, d.pg.fields, strict=True)
        )
