"""Cassandra: enable CDC on the source tables and read their schema for typed tables."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster
from cassandra.policies import DCAwareRoundRobinPolicy

from cdc_operator.appliers.cassandra_pool import SessionPool
from cdc_operator.appliers.tls import ca_file
from cdc_operator.builders.source_check import judge
from cdc_operator.models import CassandraSpec


class CassandraError(Exception):
    pass


SESSIONS = SessionPool()


def _cluster(spec: CassandraSpec, username: str | None, password: str | None) -> Cluster:
    hosts, port = [], 9042
    for cp in spec.contact_points:
        host, _, p = cp.rpartition(":")
        hosts.append(host or cp)
        port = int(p) if p.isdigit() else port
    auth = PlainTextAuthProvider(username, password) if username and password else None
    context = None
    if spec.tls is not None:
        context = ssl.create_default_context(cafile=ca_file(spec.tls.ca_bundle))
        context.check_hostname = spec.tls.verify_hostname
    return Cluster(
        hosts, port=port, protocol_version=5, auth_provider=auth, connect_timeout=5,
        ssl_context=context,
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=spec.local_datacenter),
    )  # fmt: skip


@dataclass
class SourceTable:
    """A source table as the operator found it: a schema to replicate, or why not."""

    schema: dict[str, Any] | None = None
    problem: tuple[str, str] | None = None  # (reason, message)
    inexact: dict[str, list[str]] = field(default_factory=dict)


def enable_cdc_and_read_schemas(
    spec: CassandraSpec,
    tables: list[tuple[str, str]],
    username: str | None = None,
    password: str | None = None,
) -> dict[tuple[str, str], SourceTable]:
    """Per table: refuse what the connector cannot capture, else `cdc = true` and the schema.

    One missing or refused table only affects itself; Cassandra being unreachable raises.
    """
    tls = spec.tls
    key = SESSIONS.key(
        tuple(spec.contact_points), spec.local_datacenter, username,
        (tls.ca_bundle, tls.verify_hostname) if tls is not None else None, password=password,
    )  # fmt: skip
    try:
        with SESSIONS.session(key, lambda: _cluster(spec, username, password)) as session:
            return _per_table(session, tables)
    except CassandraError:
        raise
    except Exception as e:
        # The driver's messages can carry the username or host details: the class name only.
        raise CassandraError(f"Cassandra unavailable: {type(e).__name__}") from None


def _per_table(session: Any, tables: list[tuple[str, str]]) -> dict[tuple[str, str], SourceTable]:
    out: dict[tuple[str, str], SourceTable] = {}
    for ks, table in tables:
        row = session.execute(
            "SELECT cdc FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
            (ks, table),
        ).one()
        if row is None:
            why = f"table {ks}.{table} does not exist in Cassandra"
            out[(ks, table)] = SourceTable(problem=("SourceTableNotFound", why))
            continue
        cols = list(session.execute(
            "SELECT column_name, type, kind, position, clustering_order FROM "
            "system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (ks, table),
        ))  # fmt: skip
        verdict = judge({c.column_name: c.type for c in cols},
                        {c.column_name: c.kind for c in cols})  # fmt: skip
        if verdict.refused:
            out[(ks, table)] = SourceTable(problem=(
                "UnsupportedColumns", f"{ks}.{table}: " + "; ".join(verdict.refused)
                + " (cdc is not enabled on it)"))  # fmt: skip
            continue
        if not row.cdc:
            session.execute(f'ALTER TABLE "{ks}"."{table}" WITH cdc = true')

        def ordered(kind: str, cols: list[Any] = cols) -> list[str]:
            return [c.column_name for c in sorted(
                (c for c in cols if c.kind == kind), key=lambda c: c.position)]  # fmt: skip

        out[(ks, table)] = SourceTable(schema={
            "partitionKey": ordered("partition_key"),
            "clusteringKey": ordered("clustering"),
            "descending": [c.column_name for c in cols if c.clustering_order == "desc"],
            "static": [c.column_name for c in cols if c.kind == "static"],
            "columns": {c.column_name: c.type for c in cols},
        }, inexact=verdict.inexact)  # fmt: skip
    return out
