"""A brute-force model of what Cassandra returns after a set of mutations.

Written independently of the worker's merge code: for every row and column it
looks at all writes and all tombstones at once, so it does not depend on order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class History:
    columns: tuple[str, ...]
    ops: list[Write | Delete] = field(default_factory=list)

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
                cands = [(w.ts, w.cells[col], w.expiry) for w in writes if col in w.cells]
                cands = [x for x in cands if x[0] > tomb]
                if not cands:
                    row[col] = None
                    continue
                # Highest timestamp; at equal timestamps a deletion wins.
                _, value, exp = max(cands, key=lambda x: (x[0], x[1] is None))
                alive = value is not None and (exp is None or exp > now_us)
                row[col] = value if alive else None
                live = live or alive
            markers = [(w.ts, w.expiry) for w in writes if w.insert and w.ts > tomb]
            if markers:
                _ts, exp = max(markers, key=lambda m: (m[0], m[1] or 2**63))
                live = live or exp is None or exp > now_us
            if live:
                out[(p, c)] = row
        return out
