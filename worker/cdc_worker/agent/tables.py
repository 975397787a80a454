"""Which tables the agent must capture, and when a change needs the agent restarted.

The running agent registers most schema changes by itself (`ALTER TABLE … ADD` within
`schema.refresh.interval.ms`), but never a table created together with its keyspace nor one
using a UDT created while it runs (docs/debezium-wire-format.md, gotcha 4). Both show up here as
a `cdc = true` table the agent was not started with, so a table added to that set restarts the
agent. A removed table needs nothing: the agent just stops seeing writes to it.

A `vector<…>` column anywhere in the cluster blinds a (re)started agent (gotcha 2): it would
then capture nothing for any table. So a restart is held back while such a column exists, and
the supervisor reports why instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TableId = tuple[str, str]  # (keyspace, table)

CDC_TABLES_CQL = "SELECT keyspace_name, table_name, cdc FROM system_schema.tables"
COLUMNS_CQL = "SELECT keyspace_name, table_name, column_name, type FROM system_schema.columns"


def cdc_tables(rows: Iterable[Any]) -> frozenset[TableId]:
    """The `cdc = true` tables among rows of CDC_TABLES_CQL."""
    return frozenset((r.keyspace_name, r.table_name) for r in rows if r.cdc)


def vector_columns(rows: Iterable[Any]) -> list[str]:
    """`keyspace.table.column` of every vector column among rows of COLUMNS_CQL."""
    return sorted(
        f"{r.keyspace_name}.{r.table_name}.{r.column_name}"
        for r in rows
        if "vector<" in str(r.type).lower()
    )


@dataclass(frozen=True)
class TableSetChange:
    added: frozenset[TableId]
    removed: frozenset[TableId]

    @property
    def needs_restart(self) -> bool:
        return bool(self.added)

    def describe(self) -> str:
        parts = [f"+{k}.{t}" for k, t in sorted(self.added)]
        parts += [f"-{k}.{t}" for k, t in sorted(self.removed)]
        return " ".join(parts)


def diff(running: frozenset[TableId], now: frozenset[TableId]) -> TableSetChange:
    return TableSetChange(added=now - running, removed=running - now)


def topic(prefix: str, table: TableId) -> str:
    """The connector's topic for a table: `<topic.prefix>.<keyspace>.<table>`."""
    return f"{prefix}.{table[0]}.{table[1]}"
