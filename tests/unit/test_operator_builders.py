"""The operator's pure builders: worker config, connector properties, manifests, conditions."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cdc_operator.builders import manifests
from cdc_operator.builders.conditions import set_condition, summarize
from cdc_operator.builders.debezium import properties
from cdc_operator.builders.worker_config import Table, worker_config
from cdc_operator.models import CdcPipelineSpec, RereadSpec, TableReplicationSpec
from cdc_worker.config import WorkerConfig

SPEC = CdcPipelineSpec.model_validate({
    "cassandra": {"contactPoints": ["cass-0.cass:9042", "cass-1.cass:9042"]},
    "debezium": {"topicPrefix": "shop", "config": {"http.port": "9000"}},
    "kafka": {"bootstrapServers": "kafka:9092", "deadLetterTopic": "shop.dlq"},
    "postgres": {"host": "pg", "database": "dw", "schema": "cdc",
                 "credentials": {"vaultPath": "cdc/postgres"}},
    "redis": {"url": "redis://redis:6379/0"},
    "worker": {"image": "localhost/cass-cdc-pg:dev", "replicas": 2,
               "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
})  # fmt: skip
ORDERS = TableReplicationSpec.model_validate({
    "pipelineRef": {"name": "shop"}, "source": {"keyspace": "sales", "table": "orders"},
    "columns": {"rename": {"qty": "quantity"}}, "deleteMode": "soft",
})  # fmt: skip
USERS = TableReplicationSpec.model_validate({
    "pipelineRef": {"name": "shop"}, "source": {"keyspace": "sales", "table": "users"},
    "target": {"schema": "crm", "table": "customers"},
})  # fmt: skip
OWNER = {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline", "name": "shop", "uid": "u1",
         "controller": True, "blockOwnerDeletion": True}  # fmt: skip
SCHEMA = {"partitionKey": ["id"], "columns": {"id": "uuid", "qty": "int"}}


def test_worker_config_is_what_the_worker_accepts() -> None:
    doc = worker_config("team-a", "shop", SPEC, [Table("u", USERS), Table("o", ORDERS, SCHEMA)])
    cfg = WorkerConfig.model_validate(doc)  # the worker's own validation: one contract
    assert cfg.kafka.group_id == "cdc.team-a.shop"
    assert [t.topic for t in cfg.tables] == ["shop.sales.orders", "shop.sales.users"]
    orders, users = cfg.tables
    assert orders.delete_mode == "soft"
    assert orders.columns.rename == {"qty": "quantity"}
    assert orders.schema_ is not None
    assert orders.schema_.partition_key == ["id"]
    assert (users.target.schema_, users.target.table) == ("crm", "customers")
    assert "password" not in yaml.safe_dump(doc).lower()


def test_reread_reaches_the_worker_config_only_when_enabled() -> None:
    on = ORDERS.model_copy(update={"reread": RereadSpec(enabled=True, consistency="ALL")})
    off = USERS.model_copy(update={"reread": RereadSpec(enabled=False)})
    doc = worker_config("team-a", "shop", SPEC, [Table("u", off), Table("o", on, SCHEMA)])
    orders, users = WorkerConfig.model_validate(doc).tables
    assert orders.reread is not None
    assert (orders.reread.consistency, orders.reread.rows_per_second) == ("ALL", 0)
    assert users.reread is None


def test_debezium_properties_per_node() -> None:
    text = properties("shop", SPEC, [ORDERS, USERS], "cass-1.cass:9042")
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert props["topic.prefix"] == "shop"
    assert props["cassandra.node.id"] == "cass-1-cass"
    assert props["snapshot.mode"] == "NEVER"
    assert props["commit.log.real.time.processing.enabled"] == "true"
    assert props["kafka.producer.bootstrap.servers"] == "kafka:9092"
    assert props["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert props["decimal.handling.mode"] == "string"
    assert props["http.port"] == "9000"  # spec.debezium.config overrides defaults
    assert "#   sales.orders -> shop.sales.orders" in text


def test_debezium_config_refuses_secrets() -> None:
    spec = SPEC.model_copy(deep=True)
    spec.debezium.config["kafka.producer.sasl.jaas.config"] = "x"
    with pytest.raises(ValueError, match="secrets"):
        properties("shop", spec, [ORDERS], "c:9042")


def _pod(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_worker_deployment_is_restricted_and_rolls_on_hash_change() -> None:
    a = manifests.worker_deployment("ns", "shop", OWNER, SPEC, "c1", "s1", ["POSTGRES_PASSWORD"], 2)
    b = manifests.worker_deployment("ns", "shop", OWNER, SPEC, "c1", "s2", ["POSTGRES_PASSWORD"], 2)
    assert a["spec"]["template"] != b["spec"]["template"]
    pod = _pod(a)
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["command"] == ["cdc-worker", "run"]
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}}
    env = {e["name"]: e for e in c["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "shop-credentials"
    assert "value" not in env["POSTGRES_PASSWORD"]
    assert a["metadata"]["ownerReferences"] == [OWNER]
    assert a["spec"]["replicas"] == 2


def test_secret_keys_are_checked() -> None:
    s = manifests.credentials_secret("ns", "shop", OWNER, {"POSTGRES_PASSWORD": "p"})
    assert s["data"] == {"POSTGRES_PASSWORD": "cA=="}
    with pytest.raises(ValueError, match="unexpected"):
        manifests.credentials_secret("ns", "shop", OWNER, {"password": "p"})


def test_conditions_keep_transition_time_until_status_changes() -> None:
    c = set_condition([], "SecretsReady", True, "Loaded", "ok", 1, now="t1")
    c = set_condition(c, "SecretsReady", True, "Loaded", "still ok", 2, now="t2")
    assert c[0]["lastTransitionTime"] == "t1"
    assert c[0]["observedGeneration"] == 2
    c = set_condition(c, "SecretsReady", False, "VaultUnreachable", "down", 2, now="t3")
    assert c[0]["lastTransitionTime"] == "t3"
    c = summarize(c, ["SecretsReady", "TopicsReady"], 2)
    ready = next(x for x in c if x["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "VaultUnreachable")


def test_source_tables_are_judged_by_their_columns() -> None:
    from cdc_operator.builders.source_check import judge

    v = judge(
        {"id": "uuid", "tags": "set<text>", "m": "frozen<map<text, int>>", "s": "int",
         "addr": "frozen<address>", "l": "list<frozen<tuple<int, text>>>"},
        {"id": "partition_key", "s": "static"},
    )  # fmt: skip
    assert v.refused == []
    assert v.inexact == {"NonFrozenCollection": ["l", "tags"], "StaticColumn": ["s"]}
    bad = judge({"id": "int", "emb": "vector<float, 3>", "home": "address",
                 "ok": "frozen<list<vector<float, 2>>>"}, {})  # fmt: skip
    assert bad.refused == ["emb (vector: blinds the agent)",
                           "home (non-frozen user type address: breaks capture)",
                           "ok (vector: blinds the agent)"]  # fmt: skip
