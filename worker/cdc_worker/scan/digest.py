"""The order-independent digest of rows "as the worker would write them".

A row's canonical text is its key columns then its replicated value columns, in
the target table's column order, each length-prefixed (`len:text`, `~` for
null) so that no value can imitate a separator. A value counts only while it is
live (not expired at the scan's `now`), exactly as Cassandra would return it.
The row hash is the first 64 bits of md5(text) as a signed integer; a range's
digest is (row count, exact sum of row hashes). A sum is order independent and,
unlike XOR, a row present twice does not cancel out; PostgreSQL sums bigints
into an exact numeric, Python into an int, so both sides agree bit for bit.

Write times and expiries are not part of the digest: a row loaded by the
connector's snapshot carries the snapshot time, not Cassandra's write time, and
its values are still right. The same definition is rendered as SQL by
`canon_sql`/`row_text_sql`, so PostgreSQL computes its side where the data is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cdc_worker.target import Column, qi
from cdc_worker.typemap import CqlType, pg_type


@dataclass(frozen=True, slots=True)
class Digest:
    count: int
    total: int

    @staticmethod
    def of(hashes: Iterable[int]) -> Digest:
        n = s = 0
        for h in hashes:
            n += 1
            s += h
        return Digest(n, s)


def lp(s: str | None) -> str:
    return "~" if s is None else f"{len(s)}:{s}"


def row_text(fields: Sequence[str | None]) -> str:
    return "".join(lp(f) for f in fields)


def row_hash(text: str) -> int:
    return int.from_bytes(
        hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], "big", signed=True
    )


# -- SQL ----------------------------------------------------------------------------------------

NOW = "%(now)s"  # the scan's `now` (µs) as a query parameter; an SQL expression may stand in


def canon_sql(t: CqlType, expr: str) -> str:
    """SQL computing `values.canon` of the stored value `expr` (NULL stays NULL)."""
    n = t.name
    if n in ("text", "ascii", "varchar"):
        return f"({expr})::text"
    if n in ("timestamp", "time", "duration"):
        return f"(extract(epoch from {expr}) * 1000000)::bigint::text"
    if n == "date":
        return f"(({expr}) - DATE '1970-01-01')::text"
    if n in ("float", "double"):
        return f"encode(float8send(({expr})::float8), 'hex')"
    if n == "blob":
        return f"encode({expr}, 'hex')"
    if n == "inet":
        return f"host({expr})"
    if n in ("list", "set", "vector") and pg_type(t) != "jsonb":
        el = canon_sql(t.args[0], "u.e")
        return (
            f"(SELECT string_agg(COALESCE(length({el})::text || ':' || {el}, '~'), '' "
            f"ORDER BY u.o) FROM unnest({expr}) WITH ORDINALITY AS u(e, o))"
        )
    return f"({expr})::text"  # integers, numeric, uuid, boolean, jsonb


def lp_sql(expr: str) -> str:
    return f"COALESCE(length({expr})::text || ':' || {expr}, '~')"


def key_text_sql(keys: Sequence[Column], alias: str = "m") -> str:
    return " || ".join(lp_sql(canon_sql(c.col.cql, f"{alias}.{qi(c.target)}")) for c in keys)


def live_value_sql(c: Column, attnum: int, alias: str = "m", now: str = NOW) -> str:
    """The stored value if live at `now`, else NULL (an expired cell reads as deleted)."""
    v = f"{alias}.{qi(c.target)}"
    return (
        f"CASE WHEN {alias}._cdc_exp[{attnum}] IS NULL OR {alias}._cdc_exp[{attnum}] > {now} "
        f"THEN {v} END"
    )


def value_fields_sql(
    vals: Sequence[Column], attnums: dict[str, int], alias: str = "m", now: str = NOW
) -> list[str]:
    return [canon_sql(c.col.cql, live_value_sql(c, attnums[c.target], alias, now)) for c in vals]


def row_text_sql(
    keys: Sequence[Column], vals: Sequence[Column], attnums: dict[str, int], alias: str = "m",
    now: str = NOW,
) -> str:  # fmt: skip
    fields = [canon_sql(c.col.cql, f"{alias}.{qi(c.target)}") for c in keys]
    fields += value_fields_sql(vals, attnums, alias, now)
    return " || ".join(lp_sql(f) for f in fields)


def hash_sql(text_sql: str) -> str:
    return f"('x' || left(md5({text_sql}), 16))::bit(64)::bigint"


def alive_sql(
    vals: Sequence[Column], attnums: dict[str, int], soft: bool, alias: str = "m",
    now: str = NOW,
) -> str:  # fmt: skip
    """A stored row Cassandra would return: a live value or a live row marker."""
    parts = [f"{live_value_sql(c, attnums[c.target], alias, now)} IS NOT NULL" for c in vals]
    parts.append(
        f"({alias}._cdc_marker_ts IS NOT NULL AND "
        f"({alias}._cdc_marker_exp IS NULL OR {alias}._cdc_marker_exp > {now}))"
    )
    cond = "(" + " OR ".join(parts) + ")"
    return f"({alias}._cdc_deleted_at IS NULL AND {cond})" if soft else cond
