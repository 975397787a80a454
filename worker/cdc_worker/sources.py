"""Where a table's Cassandra schema comes from: the config, Cassandra itself, or the events.

At start the config's `schema` (rendered by the operator from Cassandra) is used;
without it the worker asks Cassandra's `system_schema` when `cassandra` is
configured. When events carry columns the schema lacks (ALTER TABLE … ADD), the
new columns' types come from Cassandra if reachable, else from the Kafka Connect
schema in the `{schema, payload}` wrapper, else from the JSON value itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from cdc_worker.config import CassandraConfig, TableConfig
from cdc_worker.schema import TableSchema, schema_from_spec

_CONNECT_TO_CQL = {
    "int8": "tinyint", "int16": "smallint", "int32": "int", "int64": "bigint",
    "float32": "float", "float64": "double", "float": "float", "double": "double",
    "boolean": "boolean", "string": "text",
    "bytes": "blob",
}  # fmt: skip


class SchemaUnavailable(Exception):
    """No schema for a table: neither in the config nor from Cassandra."""


def cassandra_columns(cfg: CassandraConfig, keyspace: str, table: str) -> list[dict[str, str]]:
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    hosts, port = [], 9042
    for cp in cfg.contact_points:
        host, _, p = cp.rpartition(":") if ":" in cp else (cp, "", "")
        hosts.append(host or cp)
        port = int(p) if p else port
    cluster = Cluster(
        hosts, port=port, protocol_version=5,
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=cfg.local_datacenter),
    )  # fmt: skip
    try:
        session = cluster.connect()
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
        cluster.shutdown()


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


def infer_new_columns(
    raw: bytes | None, columns: dict[str, Any], cassandra: CassandraConfig | None,
    keyspace: str, table: str,
) -> dict[str, str]:  # fmt: skip
    """CQL types for columns an event carries but the schema lacks."""
    if cassandra is not None:
        try:
            known = {c["name"]: c["type"] for c in cassandra_columns(cassandra, keyspace, table)}
            if all(n in known for n in columns):
                return {n: known[n] for n in columns}
        except Exception:  # noqa: S110 - fall back to what the event says
            pass
    fields: dict[str, Any] = {}
    try:
        doc = orjson.loads(raw or b"null")
        if isinstance(doc, dict) and isinstance(doc.get("schema"), dict):
            for f in doc["schema"].get("fields", []):
                if f.get("field") == "after":
                    fields = {c["field"]: c for c in f.get("fields", [])}
    except orjson.JSONDecodeError:
        pass
    out: dict[str, str] = {}
    for name, cell in columns.items():
        out[name] = _from_connect(fields.get(name)) or _from_value(cell)
    return out


def _from_connect(field: Any) -> str | None:
    if not isinstance(field, dict):
        return None
    value = next((f for f in field.get("fields", []) if f.get("field") == "value"), None)
    if not isinstance(value, dict):
        return None
    t = value.get("type")
    if t == "array":
        inner = _CONNECT_TO_CQL.get(str((value.get("items") or {}).get("type")), "text")
        return f"list<{inner}>"
    if t == "map":
        return "map<text, text>"
    return _CONNECT_TO_CQL.get(str(t))


def _from_value(cell: Any) -> str:
    v = cell.get("value") if isinstance(cell, dict) else None
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "bigint"
    if isinstance(v, float):
        return "double"
    if isinstance(v, list):
        return "list<text>"
    if isinstance(v, dict):
        return "map<text, text>"
    return "text"
