"""The shape of a replicated table: which columns exist, their CQL types, their roles.

Debezium's Cassandra events do not say which key columns are partition and which
are clustering columns, nor the exact CQL types (a uuid and a text are both JSON
strings), so the worker needs the Cassandra schema. It comes from the worker
config (rendered by the operator) or from Cassandra itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdc_worker.typemap import CqlType, converter, parse_cql_type


class ColumnKind(StrEnum):
    PARTITION_KEY = "partition_key"
    CLUSTERING = "clustering"
    STATIC = "static"
    REGULAR = "regular"


@dataclass(frozen=True, slots=True)
class SourceColumn:
    name: str
    cql: CqlType
    kind: ColumnKind
    descending: bool = False  # clustering order


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A Cassandra table: key columns in key order, then the other columns."""

    keyspace: str
    table: str
    columns: tuple[SourceColumn, ...]
    by_name: dict[str, SourceColumn] = field(init=False, repr=False, compare=False)
    # Decoder plans, built once: (name, converter) for key columns and for value columns.
    key_plan: tuple[tuple[str, Callable[[Any], str], bool], ...] = field(
        init=False, repr=False, compare=False
    )
    value_plan: tuple[tuple[str, Callable[[Any], str]], ...] = field(
        init=False, repr=False, compare=False
    )
    known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})
        if not self.partition_key:
            raise ValueError(f"{self.keyspace}.{self.table}: no partition key column")
        key_plan = tuple(
            (c.name, converter(c.cql), c.kind is ColumnKind.PARTITION_KEY) for c in self.primary_key
        )
        object.__setattr__(self, "key_plan", key_plan)
        value_plan = tuple((c.name, converter(c.cql)) for c in self.values)
        object.__setattr__(self, "value_plan", value_plan)
        object.__setattr__(self, "known", frozenset([*self.by_name, "_range_start", "_range_end"]))

    @property
    def partition_key(self) -> tuple[SourceColumn, ...]:
        return tuple(c for c in self.columns if c.kind is ColumnKind.PARTITION_KEY)

    @property
    def clustering(self) -> tuple[SourceColumn, ...]:
        return tuple(c for c in self.columns if c.kind is ColumnKind.CLUSTERING)

    @property
    def primary_key(self) -> tuple[SourceColumn, ...]:
        return self.partition_key + self.clustering

    @property
    def values(self) -> tuple[SourceColumn, ...]:
        """Non-key columns (static and regular)."""
        return tuple(c for c in self.columns if c.kind in (ColumnKind.STATIC, ColumnKind.REGULAR))

    def with_column(self, name: str, cql: str) -> TableSchema:
        """The schema after `ALTER TABLE … ADD name cql` (schema evolution)."""
        col = SourceColumn(name, parse_cql_type(cql), ColumnKind.REGULAR)
        return TableSchema(self.keyspace, self.table, (*self.columns, col))


def schema_from_spec(
    keyspace: str,
    table: str,
    partition_key: list[str],
    clustering: list[str],
    columns: dict[str, str],
    *,
    descending: frozenset[str] = frozenset(),
    static: frozenset[str] = frozenset(),
) -> TableSchema:
    """Build a schema from names and CQL type strings (the worker config's form)."""
    missing = [c for c in (*partition_key, *clustering) if c not in columns]
    if missing:
        raise ValueError(f"{keyspace}.{table}: key columns {missing} have no type in `columns`")
    cols: list[SourceColumn] = [
        SourceColumn(n, parse_cql_type(columns[n]), ColumnKind.PARTITION_KEY) for n in partition_key
    ]
    cols += [
        SourceColumn(n, parse_cql_type(columns[n]), ColumnKind.CLUSTERING, n in descending)
        for n in clustering
    ]
    keys = {*partition_key, *clustering}
    cols += [
        SourceColumn(n, parse_cql_type(t), ColumnKind.STATIC if n in static else ColumnKind.REGULAR)
        for n, t in columns.items()
        if n not in keys
    ]
    return TableSchema(keyspace, table, tuple(cols))
