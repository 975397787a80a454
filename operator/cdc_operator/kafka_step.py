"""What a pipeline asks of Kafka: client settings, its topics, and who else claims them.

Kafka topic names are global to a Kafka cluster, so two pipelines (in any namespaces) that
name the same topic prefix or dead-letter topic on the same bootstrap servers would write
and alter each other's topics. The oldest pipeline keeps the names; any later one gets
`Conflict` and touches nothing in Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cdc_operator.appliers.topics import TopicWant
from cdc_operator.builders import names
from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec

Claim = tuple[str, str, str]  # (bootstrap servers, "prefix" | "dlq", name)
Claimant = tuple[str, str, str]  # (creationTimestamp, namespace, name)


def kafka_settings(spec: CdcPipelineSpec, creds: dict[str, str]) -> dict[str, Any]:
    """The operator's admin client: its own identity (`kafka.operatorCredentials`, else the
    workers' `kafka.credentials`) and the pipeline's Kafka CA bundle."""
    out: dict[str, Any] = {"bootstrap.servers": spec.kafka.bootstrap_servers,
                           "security.protocol": spec.kafka.security_protocol}  # fmt: skip
    if spec.kafka.ca_bundle and "SSL" in spec.kafka.security_protocol:
        out["ssl.ca.pem"] = spec.kafka.ca_bundle
    if spec.kafka.sasl_mechanism:
        who = "OPERATOR_KAFKA" if spec.kafka.operator_credentials is not None else "KAFKA"
        out |= {"sasl.mechanism": spec.kafka.sasl_mechanism,
                "sasl.username": creds.get(f"{who}_USERNAME", ""),
                "sasl.password": creds.get(f"{who}_PASSWORD", "")}  # fmt: skip
    return out


def topic_wants(spec: CdcPipelineSpec, tables: list[TableReplicationSpec]) -> list[TopicWant]:
    """The tables' topics, then the dead-letter topic (last)."""
    t = spec.kafka.topic
    wants = [TopicWant(names.topic(spec, tr), t.partitions, t.replication_factor,
                       t.retention_hours * 3_600_000) for tr in tables]  # fmt: skip
    wants.append(TopicWant(spec.kafka.dead_letter_topic, t.partitions, t.replication_factor,
                           spec.kafka.dead_letter_retention_hours * 3_600_000))  # fmt: skip
    return wants


def claims(spec: CdcPipelineSpec) -> list[Claim]:
    servers = ",".join(sorted(s.strip() for s in spec.kafka.bootstrap_servers.split(",")))
    return [(servers, "prefix", spec.debezium.topic_prefix),
            (servers, "dlq", spec.kafka.dead_letter_topic)]  # fmt: skip


def rival(
    mine: Claimant, spec: CdcPipelineSpec, holders: Mapping[Claim, Iterable[Claimant]]
) -> str | None:
    """Why this pipeline may not use its topic names, or None."""
    for claim in claims(spec):
        first = min([*holders.get(claim, ()), mine])
        if first[1:] != mine[1:]:
            what = "topic prefix" if claim[1] == "prefix" else "dead-letter topic"
            return f"{what} {claim[2]} is used by pipeline {first[1]}/{first[2]}"
    return None
