"""Cassandra: enable CDC on the source tables and read their schema for typed tables."""

from __future__ import annotations

from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster
from cassandra.policies import DCAwareRoundRobinPolicy

from cdc_operator.models import CassandraSpec


class CassandraError(Exception):
    pass


def _cluster(spec: CassandraSpec, username: str | None, password: str | None) -> Cluster:
    hosts, port = [], 9042
    for cp in spec.contact_points:
        host, _, p = cp.rpartition(":")
        hosts.append(host or cp)
        port = int(p) if p.isdigit() else port
    auth = PlainTextAuthProvider(username, password) if username and password else None
    return Cluster(
        hosts, port=port, protocol_version=5, auth_provider=auth, connect_timeout=5,
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=spec.local_datacenter),
    )  # fmt: skip


def enable_cdc_and_read_schemas(
    spec: CassandraSpec,
    tables: list[tuple[str, str]],
    username: str | None = None,
    password: str | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """`ALTER TABLE … WITH cdc = true` where needed; worker-config schemas per table."""
    cluster = _cluster(spec, username, password)
    try:
        session = cluster.connect()
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for ks, table in tables:
            row = session.execute(
                "SELECT cdc FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
                (ks, table),
            ).one()
            if row is None:
                raise CassandraError(f"table {ks}.{table} does not exist")
            if not row.cdc:
                session.execute(f'ALTER TABLE "{ks}"."{table}" WITH cdc = true')
            cols = list(session.execute(
                "SELECT column_name, type, kind, position, clustering_order FROM "
                "system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
                (ks, table),
            ))  # fmt: skip

            def ordered(kind: str, cols: list[Any] = cols) -> list[str]:
                return [c.column_name for c in sorted(
                    (c for c in cols if c.kind == kind), key=lambda c: c.position)]  # fmt: skip

            out[(ks, table)] = {
                "partitionKey": ordered("partition_key"),
                "clusteringKey": ordered("clustering"),
                "descending": [c.column_name for c in cols if c.clustering_order == "desc"],
                "static": [c.column_name for c in cols if c.kind == "static"],
                "columns": {c.column_name: c.type for c in cols},
            }
        return out
    except CassandraError:
        raise
    except Exception as e:
        # The driver's messages can carry the username or host details: the class name only.
        raise CassandraError(f"Cassandra unavailable: {type(e).__name__}") from None
    finally:
        cluster.shutdown()
