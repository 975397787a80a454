"""Clustering order, so range tombstones can be matched against rows in Python.

Cassandra orders clustering columns by their type's comparator (and `DESC`
reverses a column); a range delete's bounds are clustering prefixes in that
order. Values here are PostgreSQL text forms (what the decoder produces and what
the writer reads back with `::text`), so both sides parse the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from ipaddress import ip_address
from typing import Any

from cdc_worker.decode import Bound
from cdc_worker.schema import SourceColumn


def sort_key(col: SourceColumn, text: str) -> Any:
    n = col.cql.name
    if n in ("tinyint", "smallint", "int", "bigint", "varint", "counter"):
        return int(text)
    if n in ("decimal", "float", "double"):
        return Decimal(text)
    if n in ("text", "ascii", "varchar"):
        return text.encode()
    if n == "boolean":
        return text in ("true", "t")
    if n == "timestamp":
        return datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
    if n == "date":
        return date.fromisoformat(text)
    if n == "time":
        return time.fromisoformat(text)
    if n == "timeuuid":
        u = uuid.UUID(text)
        return (u.time, u.bytes)
    if n == "uuid":
        u = uuid.UUID(text)
        return (u.version or 0, u.time if u.version == 1 else 0, u.bytes)
    if n == "blob":
        return bytes.fromhex(text.removeprefix("\\x"))
    if n == "inet":
        return ip_address(text.split("/")[0]).packed
    return text


def _cmp_prefix(cols: Sequence[SourceColumn], row: Sequence[str], bound: Sequence[str]) -> int:
    """Compare the row's clustering prefix with a bound, in clustering order."""
    for col, a, b in zip(cols, row, bound, strict=False):
        ka, kb = sort_key(col, a), sort_key(col, b)
        if ka != kb:
            less = ka < kb
            if col.descending:
                less = not less
            return -1 if less else 1
    return 0


def covers(
    cols: Sequence[SourceColumn],
    clustering: Sequence[str | None],
    start: Bound | None,
    end: Bound | None,
) -> bool:
    """Whether a range tombstone [start, end] covers a row with these clustering values."""
    if any(v is None for v in clustering):
        return False
    row = [v for v in clustering if v is not None]
    if start is not None:
        c = _cmp_prefix(cols, row, start[0])
        if c < 0 or (c == 0 and not start[1]):
            return False
    if end is not None:
        c = _cmp_prefix(cols, row, end[0])
        if c > 0 or (c == 0 and not end[1]):
            return False
    return True
