"""The example manifests users apply are valid against the same models the CRDs come from."""

from __future__ import annotations

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
        "PG_SCHEMA": "demo_1", "TOPIC_PREFIX": "demo1", "DEBEZIUM_HTTP_PORT": "58000",
    })  # fmt: skip
    spec = _check(list(yaml.safe_load_all(filled)))
    assert spec.cassandra.manage_table_cdc


def test_kind_example_and_agent_file_name_agree() -> None:
    spec = _check(list(yaml.safe_load_all((ROOT / "hack" / "kind" / "pipeline.yaml").read_text())))
    deps = (ROOT / "hack" / "kind" / "dependencies.yaml").read_text()
    assert f"/etc/debezium/{node_id(spec.cassandra.contact_points[0])}.properties" in deps
