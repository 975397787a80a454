"""Where a Cassandra table lands in PostgreSQL: names, column mapping and the DDL.

Layout of a replicated table `s.t` (docs/worker.md has the full story):
- `s.t`: the primary key, the user's columns (source names unless renamed, mapped
  types) and `_cdc_*` metadata: per-column write times and expiries as bigint
  arrays indexed by the column's attnum, the row marker's time and expiry, the
  row tombstone time, the next expiry (for the TTL sweeper), and in soft-delete
  mode `_cdc_deleted_at`.
- `s._cdc_dead_t` (hard mode): metadata of rows that are deleted, so a late,
  older write cannot resurrect them; purged after the grace period.
- `s._cdc_ptomb_t` / `s._cdc_rtomb_t`: partition and range tombstones, likewise.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from cdc_worker.schema import SourceColumn, TableSchema
from cdc_worker.typemap import pg_type


class DeleteMode(StrEnum):
    HARD = "hard"
    SOFT = "soft"


def qi(name: str) -> str:
    """Quote a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


_RESERVED = re.compile(r"_+cdc")


def safe_name(name: str) -> str:
    """The PostgreSQL name of a source column: `_cdc*` is the worker's own namespace.

    A name of one or more underscores followed by `cdc` (a legal quoted CQL identifier such as
    `"_cdc_ts"`) gets one more leading underscore: `_cdc_ts` → `__cdc_ts`, `__cdc_x` →
    `___cdc_x`. Every other name is kept. The mapping is one-to-one, and no result is a
    `_cdc*` name (those start with exactly one underscore).
    """
    return "_" + name if _RESERVED.match(name) else name


def side_name(prefix: str, table: str) -> str:
    name = f"{prefix}{table}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(table.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{prefix}{table.encode()[: 63 - len(prefix) - 9].decode(errors='ignore')}_{digest}"


@dataclass(frozen=True, slots=True)
class Column:
    source: str
    target: str
    pg_type: str
    col: SourceColumn


@dataclass(frozen=True, slots=True)
class Target:
    """A source table mapped onto its PostgreSQL table."""

    schema: TableSchema
    pg_schema: str
    pg_table: str
    delete_mode: DeleteMode
    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    rename: tuple[tuple[str, str], ...] = ()

    def _target_name(self, source: str) -> str:
        return safe_name(dict(self.rename).get(source, source))

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(
            Column(c.name, self._target_name(c.name), pg_type(c.cql), c)
            for c in self.schema.primary_key
        )

    @property
    def partition_columns(self) -> tuple[Column, ...]:
        return self.key_columns[: len(self.schema.partition_key)]

    @property
    def value_columns(self) -> tuple[Column, ...]:
        return tuple(
            Column(c.name, self._target_name(c.name), pg_type(c.cql), c)
            for c in self.schema.values
            if self.replicates(c.name)
        )

    def replicates(self, source: str) -> bool:
        if source in self.exclude:
            return False
        return self.include is None or source in self.include

    def with_schema(self, schema: TableSchema) -> Target:
        return Target(
            schema, self.pg_schema, self.pg_table, self.delete_mode,
            self.include, self.exclude, self.rename,
        )  # fmt: skip

    @property
    def fq(self) -> str:
        return f"{qi(self.pg_schema)}.{qi(self.pg_table)}"

    def side(self, prefix: str) -> str:
        return f"{qi(self.pg_schema)}.{qi(side_name(prefix, self.pg_table))}"

    @property
    def dead(self) -> str:
        return self.side("_cdc_dead_")

    @property
    def ptomb(self) -> str:
        return self.side("_cdc_ptomb_")

    @property
    def rtomb(self) -> str:
        return self.side("_cdc_rtomb_")

    @property
    def lock_key(self) -> int:
        """A stable 63-bit advisory-lock key for this table."""
        h = hashlib.sha256(f"cass-cdc-pg:{self.pg_schema}.{self.pg_table}".encode()).digest()
        return int.from_bytes(h[:8], "big", signed=True)


META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_cdc_ts", "bigint[]"),
    ("_cdc_exp", "bigint[]"),
    ("_cdc_marker_ts", "bigint"),
    ("_cdc_marker_exp", "bigint"),
    ("_cdc_del_ts", "bigint"),
)


def ddl(t: Target) -> list[str]:
    """Idempotent statements creating the table (if absent) and its side tables."""
    keys = t.key_columns
    key_defs = [f"{qi(c.target)} {c.pg_type} NOT NULL" for c in keys]
    pk = ", ".join(qi(c.target) for c in keys)
    part = t.partition_columns
    part_defs = [f"{qi(c.target)} {c.pg_type} NOT NULL" for c in part]
    part_pk = ", ".join(qi(c.target) for c in part)
    meta = [f"{n} {typ}" for n, typ in META_COLUMNS]
    main_extra = ["_cdc_next_exp bigint", "_cdc_updated_at timestamptz NOT NULL DEFAULT now()"]
    if t.delete_mode is DeleteMode.SOFT:
        main_extra.append("_cdc_deleted_at timestamptz")
    values = [f"{qi(c.target)} {c.pg_type}" for c in t.value_columns]
    out = [
        f"CREATE SCHEMA IF NOT EXISTS {qi(t.pg_schema)}",
        f"CREATE TABLE IF NOT EXISTS {t.fq} ("
        + ", ".join([*key_defs, *values, *meta, *main_extra, f"PRIMARY KEY ({pk})"])
        + ")",
    ]
    out += [f"ALTER TABLE {t.fq} ADD COLUMN IF NOT EXISTS {d}" for d in [*meta, *main_extra]]
    out.append(
        f"CREATE INDEX IF NOT EXISTS {qi(side_name('_cdc_exp_', t.pg_table))} "
        f"ON {t.fq} (_cdc_next_exp) WHERE _cdc_next_exp IS NOT NULL"
    )
    out += [
        f"CREATE TABLE IF NOT EXISTS {t.dead} ("
        + ", ".join([*key_defs, *meta, "_cdc_dead_at timestamptz NOT NULL DEFAULT now()",
                     f"PRIMARY KEY ({pk})"])
        + ")",
        f"CREATE TABLE IF NOT EXISTS {t.ptomb} ("
        + ", ".join([*part_defs, "_cdc_del_ts bigint NOT NULL",
                     "_cdc_recorded_at timestamptz NOT NULL DEFAULT now()",
                     f"PRIMARY KEY ({part_pk})"])
        + ")",
        f"CREATE TABLE IF NOT EXISTS {t.rtomb} ("
        + ", ".join([*part_defs, "_cdc_start jsonb NOT NULL", "_cdc_end jsonb NOT NULL",
                     "_cdc_del_ts bigint NOT NULL",
                     "_cdc_recorded_at timestamptz NOT NULL DEFAULT now()",
                     f"PRIMARY KEY ({part_pk}, _cdc_start, _cdc_end)"])
        + ")",
    ]  # fmt: skip
    return out
