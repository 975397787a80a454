"""Where a table's Cassandra schema comes from: the config, or Cassandra itself.

At start the config's `schema` (rendered by the operator from Cassandra) is used; without it
the worker asks Cassandra's `system_schema` when `cassandra` is configured. When events carry
columns the schema lacks (ALTER TABLE … ADD), they are added only once Cassandra confirms them,
with Cassandra's types: never guessed from the event (a guess, say `bigint` for a `timestamp`,
would be wrong for ever, and any producer could add columns by sending unknown fields). While
Cassandra cannot be asked, or has not yet agreed on the new schema, the batch waits and is
retried (`SchemaPending`); columns Cassandra still does not know after `AGREEMENT_WAIT` make the
event unappliable (`NotInSource`, dead-lettered).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from cdc_worker import cassandra_client
from cdc_worker.config import CassandraConfig, TableConfig
from cdc_worker.schema import TableSchema, schema_from_spec


class SchemaUnavailable(Exception):
    """No schema for a table: neither in the config nor from Cassandra."""


class SchemaPending(Exception):
    """Cassandra cannot confirm new columns yet (unreachable, or schema not yet agreed)."""


class NotInSource(Exception):
    """An event carries columns the source table does not have."""


AGREEMENT_WAIT = float(os.environ.get("CDC_WORKER_SCHEMA_AGREEMENT_SECONDS", "30"))
_first_seen: dict[tuple[str, str, frozenset[str]], float] = {}


def cassandra_columns(cfg: CassandraConfig, keyspace: str, table: str) -> list[dict[str, str]]:
    c = cassandra_client.cluster(cfg)
    try:
        session = c.connect()
        rows = session.execute(
            "SELECT column_name, type, kind, position, clustering_order FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, table),
        )
        return [
            {"name": r.column_name, "type": r.type, "kind": r.kind, "position": str(r.position),
             "order": r.clustering_order}
            for r in rows
        ]  # fmt: skip
    finally:
        c.shutdown()


def schema_from_cassandra(cfg: CassandraConfig, keyspace: str, table: str) -> TableSchema:
    cols = cassandra_columns(cfg, keyspace, table)
    if not cols:
        raise SchemaUnavailable(f"table {keyspace}.{table} not found in Cassandra")

    def ordered(kind: str) -> list[str]:
        sel = sorted((c for c in cols if c["kind"] == kind), key=lambda c: int(c["position"]))
        return [c["name"] for c in sel]

    return schema_from_spec(
        keyspace, table, ordered("partition_key"), ordered("clustering"),
        {c["name"]: c["type"] for c in cols},
        descending=frozenset(c["name"] for c in cols if c["order"] == "desc"),
        static=frozenset(c["name"] for c in cols if c["kind"] == "static"),
    )  # fmt: skip


def resolve_schema(table: TableConfig, cassandra: CassandraConfig | None) -> TableSchema:
    src = table.source
    if table.schema_ is not None:
        s = table.schema_
        return schema_from_spec(
            src.keyspace, src.table, s.partition_key, s.clustering_key, s.columns,
            descending=frozenset(s.descending), static=frozenset(s.static),
        )  # fmt: skip
    if cassandra is not None:
        return schema_from_cassandra(cassandra, src.keyspace, src.table)
    raise SchemaUnavailable(
        f"tables[{src.keyspace}.{src.table}]: no `schema` in the config and no `cassandra` to ask"
    )


def confirm_new_columns(
    columns: Iterable[str], cassandra: CassandraConfig | None, keyspace: str, table: str,
    now: float | None = None,
) -> dict[str, str]:  # fmt: skip
    """Cassandra's CQL types for columns an event carries but the schema lacks."""
    names = frozenset(columns)
    where = f"{keyspace}.{table}"
    if cassandra is None:
        raise SchemaPending(f"new columns {sorted(names)} of {where} cannot be confirmed: the "
                            "config has no `cassandra` to ask")  # fmt: skip
    try:
        known = {c["name"]: c["type"] for c in cassandra_columns(cassandra, keyspace, table)}
    except Exception as e:
        raise SchemaPending(f"Cassandra cannot be asked about {where} ({type(e).__name__}); "
                            "retrying") from None  # fmt: skip
    missing = sorted(names - known.keys())
    if not missing:
        _first_seen.pop((keyspace, table, names), None)
        return {n: known[n] for n in names}
    now = time.monotonic() if now is None else now
    first = _first_seen.setdefault((keyspace, table, names), now)
    if now - first < AGREEMENT_WAIT:
        raise SchemaPending(f"Cassandra does not know {missing} of {where} yet; retrying")
    _first_seen.pop((keyspace, table, names), None)
    raise NotInSource(f"columns {missing} are not in Cassandra's schema of {where}")
