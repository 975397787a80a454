"""The worker's configuration (docs/worker.md) rendered from a pipeline and its tables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cdc_operator.builders.names import group_id, topic
from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec

# Not 8080: on the local node (host network) the operator Pod uses 8080. Overridable for a
# shared host network, where another process may already hold the port on every address.
HTTP_PORT = int(os.environ.get("CDC_OPERATOR_WORKER_HTTP_PORT", "8081"))
CONFIG_DIR = "/etc/cdc"  # the worker ConfigMap's mount: worker.yaml and the CA files


def ca_files(spec: CdcPipelineSpec) -> dict[str, str]:
    """The pipeline's CA bundles as ConfigMap files (public certificates, never a secret)."""
    out = {
        "postgres-ca.pem": spec.postgres.ca_bundle,
        "kafka-ca.pem": spec.kafka.ca_bundle,
        "redis-ca.pem": spec.redis.ca_bundle if spec.redis else None,
        "cassandra-ca.pem": spec.cassandra.tls.ca_bundle if spec.cassandra.tls else None,
    }
    return {k: v for k, v in out.items() if v}


def _ca(files: dict[str, str], name: str) -> str | None:
    return f"{CONFIG_DIR}/{name}" if name in files else None


@dataclass(frozen=True)
class Table:
    """A TableReplication with, when the operator could read it, its Cassandra schema."""

    name: str
    spec: TableReplicationSpec
    schema: dict[str, Any] | None = None  # worker config `schema` form


def worker_config(namespace: str, pipeline: str, spec: CdcPipelineSpec, tables: list[Table]) -> Any:
    pg = spec.postgres
    cas = ca_files(spec)
    doc: dict[str, Any] = {
        "pipeline": f"{namespace}.{pipeline}",
        "kafka": {
            "bootstrapServers": spec.kafka.bootstrap_servers,
            "groupId": group_id(namespace, pipeline),
            "deadLetterTopic": spec.kafka.dead_letter_topic,
            "securityProtocol": spec.kafka.security_protocol,
        },
        "postgres": {"host": pg.host, "port": pg.port, "database": pg.database,
                     "schema": pg.schema_, "sslMode": pg.ssl_mode},
        "cassandra": {"contactPoints": list(spec.cassandra.contact_points),
                      "localDatacenter": spec.cassandra.local_datacenter},
        "tables": [],
        "batch": {"maxEvents": spec.worker.batch.max_events,
                  "maxWaitMs": spec.worker.batch.max_wait_ms},
        "httpPort": HTTP_PORT,
    }  # fmt: skip
    if spec.worker.redact_columns:
        doc["redactColumns"] = list(spec.worker.redact_columns)
    if spec.kafka.sasl_mechanism:
        doc["kafka"]["saslMechanism"] = spec.kafka.sasl_mechanism
    if ca := _ca(cas, "kafka-ca.pem"):
        doc["kafka"]["sslCaLocation"] = ca
    if ca := _ca(cas, "postgres-ca.pem"):
        doc["postgres"]["sslRootCert"] = ca
    if spec.cassandra.tls is not None:
        verify = spec.cassandra.tls.verify_hostname
        doc["cassandra"]["tls"] = {"caFile": _ca(cas, "cassandra-ca.pem"), "verifyHostname": verify}
    if spec.redis is not None:
        doc["redis"] = {"url": spec.redis.url}
        if ca := _ca(cas, "redis-ca.pem"):
            doc["redis"]["caFile"] = ca
    for t in sorted(tables, key=lambda t: t.name):
        tr = t.spec
        entry: dict[str, Any] = {
            "topic": topic(spec, tr),
            "source": {"keyspace": tr.source.keyspace, "table": tr.source.table},
            "target": {"schema": tr.target.schema_ or pg.schema_,
                       "table": tr.target.table or tr.source.table},
            "deleteMode": tr.delete_mode,
            "createTable": tr.create_table,
            "columns": {"exclude": list(tr.columns.exclude), "rename": dict(tr.columns.rename)},
        }  # fmt: skip
        if tr.columns.include is not None:
            entry["columns"]["include"] = list(tr.columns.include)
        if t.schema is not None:
            entry["schema"] = t.schema
        if tr.reread is not None and tr.reread.enabled:
            entry["reread"] = {"consistency": tr.reread.consistency,
                               "rowsPerSecond": tr.reread.rows_per_second}  # fmt: skip
        doc["tables"].append(entry)
    return doc
