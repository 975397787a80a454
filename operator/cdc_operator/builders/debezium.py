"""The Debezium Cassandra connector's agent configuration, one properties file per node.

The agent runs beside each Cassandra node and captures every table with
`cdc = true` (the connector has no table list; `manageTableCdc` decides which
tables those are). Node-local paths default to a conventional layout and can be
overridden through `spec.debezium.config`; the local stack overrides them.
"""

from __future__ import annotations

import re

from cdc_operator.builders.names import topic
from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec

DEFAULTS: dict[str, str] = {
    "cassandra.config": "/etc/cassandra/cassandra.yaml",
    "cassandra.driver.config.file": "/etc/debezium/application.conf",
    "commit.log.relocation.dir": "/var/lib/debezium/relocation",
    "offset.backing.store.dir": "/var/lib/debezium/offsets",
    "http.port": "8000",
    "commit.log.real.time.processing.enabled": "true",
    "commit.log.marked.complete.poll.interval.ms": "250",
    "commit.log.post.processing.enabled": "true",
    "commit.log.transfer.class": "io.debezium.connector.cassandra.BlackHoleCommitLogTransfer",
    "poll.interval.ms": "100",
    "cdc.dir.poll.interval.ms": "1000",
    "schema.refresh.interval.ms": "2000",
    "snapshot.consistency": "ONE",
    "offset.flush.interval.ms": "0",
    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
    "key.converter.schemas.enable": "true",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "true",
    "decimal.handling.mode": "string",
    "varint.handling.mode": "string",
    "kafka.producer.acks": "all",
    "kafka.producer.linger.ms": "0",
    "kafka.producer.retries": "2147483647",
    "kafka.producer.enable.idempotence": "true",
}
FORBIDDEN = ("password", "secret", "sasl.jaas")


def node_id(contact_point: str) -> str:
    host = contact_point.rsplit(":", 1)[0]
    return "".join(ch if ch.isalnum() else "-" for ch in host).strip("-") or "node"


def properties(
    pipeline: str, spec: CdcPipelineSpec, tables: list[TableReplicationSpec], contact_point: str
) -> str:
    """The agent's config.properties for the node at `contact_point`."""
    odd = [k for k in spec.debezium.config if not _KEY.fullmatch(k)]
    if odd:
        raise ValueError(f"spec.debezium.config: keys {odd} are not property names [A-Za-z0-9._-]")
    bad = [k for k in spec.debezium.config if any(f in k.lower() for f in FORBIDDEN)]
    if bad:
        raise ValueError(f"spec.debezium.config: {bad} look like secrets; use credentials refs")
    node = node_id(contact_point)
    props = {
        **DEFAULTS,
        "topic.prefix": spec.debezium.topic_prefix,
        # The exact backfill (cdc-worker backfill) replaces the connector's snapshot.
        "snapshot.mode": "NEVER"
        if any(t.backfill is not None and t.backfill.enabled for t in tables)
        else spec.debezium.snapshot_mode.upper(),
        "cassandra.node.id": node,
        "kafka.producer.bootstrap.servers": spec.kafka.bootstrap_servers,
        "kafka.producer.client.id": f"debezium-{pipeline}-{node}",
        "kafka.producer.security.protocol": spec.kafka.security_protocol,
        **_kafka_security(spec),
        **spec.debezium.config,
    }
    header = [
        f"# Debezium Cassandra agent for pipeline {pipeline}, node {contact_point}.",
        "# Rendered by cdc-operator; captured tables (cdc = true):",
        *(f"#   {t.source.keyspace}.{t.source.table} -> {topic(spec, t)}"
          for t in sorted(tables, key=lambda t: (t.source.keyspace, t.source.table))),
    ]  # fmt: skip
    body = [f"{k}={_escape(v)}" for k, v in sorted(props.items())]
    return "\n".join([*header, *body]) + "\n"


def _kafka_security(spec: CdcPipelineSpec) -> dict[str, str]:
    """The producer's TLS trust (inline PEM) and SASL mechanism. Never a password: cdc-agent
    adds `kafka.producer.sasl.jaas.config` from its own environment at start (docs/agent.md)."""
    k, out = spec.kafka, {}
    if k.ca_bundle and "SSL" in k.security_protocol:
        out["kafka.producer.ssl.truststore.type"] = "PEM"
        out["kafka.producer.ssl.truststore.certificates"] = k.ca_bundle.strip()
        out["kafka.producer.ssl.endpoint.identification.algorithm"] = "https"
    if k.sasl_mechanism and k.security_protocol.startswith("SASL"):
        out["kafka.producer.sasl.mechanism"] = k.sasl_mechanism
    return out


def _escape(v: str) -> str:
    """A value as java.util.Properties reads it back: no line ends, ASCII only."""
    out = []
    for i, ch in enumerate(v):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == " " and i == 0:
            out.append("\\ ")
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else _surrogates(ch))
        else:
            out.append(ch)
    return "".join(out)


def _surrogates(ch: str) -> str:
    hi, lo = divmod(ord(ch) - 0x10000, 0x400)
    return f"\\u{0xD800 + hi:04x}\\u{0xDC00 + lo:04x}"


_KEY = re.compile(r"[A-Za-z0-9._-]+")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
