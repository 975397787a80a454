"""A brute-force model of what Cassandra returns after a set of mutations.

Written independently of the worker's merge code: for every row and column it
looks at all writes and all tombstones at once, so it does not depend on order.
Equal timestamps follow Cassandra 5.0 (`Cells.resolveRegular`,
`LivenessInfo.supersedes`) with the tests' own value serialization
(cassandra_bytes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.cassandra_bytes import value_bytes


@dataclass(frozen=True)
class Write:
    ts: int
    p: int
    c: int
    cells: dict[str, Any]  # column -> value (None = deleted cell)
    insert: bool  # INSERT creates a row marker
    expiry: int | None = None  # TTL expiry µs for all cells (and the marker)


@dataclass(frozen=True)
class Delete:
    ts: int
    p: int
    c: int | None = None  # None: partition delete (unless a range is given)
    lo: int | None = None  # range: c >= lo (inclusive) ...
    hi: int | None = None  # ... and c < hi (exclusive); None = open
    is_range: bool = False


_BY_PYTHON_TYPE = {str: "text", bool: "boolean", int: "bigint", float: "double", bytes: "blob"}


def cell_order(cql: str, ts: int, value: Any, exp: int | None) -> tuple[int, int, int, bytes]:
    """Which of two writes of a cell wins: the greater of these keys."""
    cql = cql or _BY_PYTHON_TYPE.get(type(value), "text")
    if value is None:
        return ts, 2, 0, b""  # a tombstone (it carries no TTL)
    if exp is not None:
        return ts, 1, exp, value_bytes(cql, value)  # expiring: the later expiry, then the value
    return ts, 0, 0, value_bytes(cql, value)


@dataclass
class History:
    columns: tuple[str, ...]
    ops: list[Write | Delete] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # column -> CQL type (else by value)

    def tombstone(self, p: int, c: int) -> int:
        best = -1
        for op in self.ops:
            if not isinstance(op, Delete) or op.p != p:
                continue
            if op.is_range:
                if (op.lo is None or c >= op.lo) and (op.hi is None or c < op.hi):
                    best = max(best, op.ts)
            elif op.c is None or op.c == c:
                best = max(best, op.ts)
        return best

    def result(self, now_us: int) -> dict[tuple[int, int], dict[str, Any]]:
        keys = {(op.p, op.c) for op in self.ops if isinstance(op, Write)}
        out: dict[tuple[int, int], dict[str, Any]] = {}
        for p, c in keys:
            tomb = self.tombstone(p, c)
            writes = [w for w in self.ops if isinstance(w, Write) and (w.p, w.c) == (p, c)]
            row: dict[str, Any] = {}
            live = False
            for col in self.columns:
                cql = self.types.get(col, "")
                cands = [
                    (w.ts, w.cells[col], w.expiry if w.cells[col] is not None else None)
                    for w in writes
                    if col in w.cells and w.ts > tomb
                ]
                if not cands:
                    row[col] = None
                    continue
                _, value, exp = max(cands, key=lambda x: cell_order(cql, *x))
                alive = value is not None and (exp is None or exp > now_us)
                row[col] = value if alive else None
                live = live or alive
            markers = [(w.ts, w.expiry) for w in writes if w.insert and w.ts > tomb]
            if markers:
                # LivenessInfo.supersedes: an expiring marker beats a live one at equal times.
                _ts, exp = max(markers, key=lambda m: (m[0], m[1] is not None, m[1] or 0))
                live = live or exp is None or exp > now_us
            if live:
                out[(p, c)] = row
        return out
