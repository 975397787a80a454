"""The example manifests users apply are valid against the same models the CRDs come from."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

import yaml

from cdc_operator.builders.debezium import node_id
from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec

ROOT = Path(__file__).resolve().parents[2]


def _check(docs: list[dict[str, object]]) -> CdcPipelineSpec:
    kinds = [d["kind"] for d in docs]
    assert kinds.count("CdcPipeline") == 1
    assert kinds.count("TableReplication") >= 2
    spec = CdcPipelineSpec.model_validate(
        next(d for d in docs if d["kind"] == "CdcPipeline")["spec"]
    )
    for d in docs:
        if d["kind"] == "TableReplication":
            TableReplicationSpec.model_validate(d["spec"])
    return spec


def test_local_example_fills_and_validates() -> None:
    text = (ROOT / "examples" / "shop-pipeline.yaml").read_text()
    names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(text)} - {
        None
    }
    filled = Template(text).substitute(dict.fromkeys(names, "x") | {
        "CASSANDRA_CONTACT_POINTS": "127.0.0.1:59042", "PG_PORT": "55432",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:59092", "REDIS_URL": "redis://127.0.0.1:56379/0",
        "VAULT_ADDR": "http://127.0.0.1:58200", "NAMESPACE": "cdc-demo", "KEYSPACE": "shop_1",
        "PG_SCHEMA": "demo_1", "TOPIC_PREFIX": "secure.demo1", "DEBEZIUM_HTTP_PORT": "58000",
        "AGENT_PORT": "58001",
        "DLQ_TOPIC": "secure-dlq.demo1", "PG_SECURE_PORT": "55432",
        "KAFKA_SASL_SSL_BOOTSTRAP": "127.0.0.1:59094",
        "REDIS_TLS_URL": "rediss://cdc@localhost:56380/0", "VAULT_TLS_ADDR": "https://localhost:58210",
        "STACK_CA": json.dumps("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
    })  # fmt: skip
    spec = _check(list(yaml.safe_load_all(filled)))
    assert spec.cassandra.manage_table_cdc
    # The demo's profile: every hop but Cassandra authenticated and verified against one CA.
    assert spec.kafka.security_protocol == "SASL_SSL"
    assert spec.postgres.ssl_mode == "verify-full"
    assert spec.redis is not None
    assert spec.vault is not None
    cas = {spec.kafka.ca_bundle, spec.postgres.ca_bundle, spec.redis.ca_bundle,
           spec.vault.ca_bundle}  # fmt: skip
    assert len(cas) == 1
    assert None not in cas


def test_kind_example_and_agent_file_name_agree() -> None:
    spec = _check(list(yaml.safe_load_all((ROOT / "hack" / "kind" / "pipeline.yaml").read_text())))
    deps = (ROOT / "hack" / "kind" / "dependencies.yaml").read_text()
    assert f"/etc/debezium/{node_id(spec.cassandra.contact_points[0])}.properties" in deps
