"""The cdc-agent sidecar builder: a container spec a Cassandra Pod template can take as is."""

from __future__ import annotations

import pytest
import yaml

from cdc_operator.builders.agent import (
    CONTAINER,
    Sidecar,
    agent_sidecar,
    driver_conf,
    driver_configmap,
    login_secret_name,
)
from cdc_operator.builders.debezium import DEFAULTS
from cdc_operator.builders.names import connector_name


@pytest.fixture
def sidecar() -> Sidecar:
    return agent_sidecar("shop", "registry.example/cass-cdc-pg-agent:0.1.0")


def _env(sidecar: Sidecar) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in sidecar.container["env"]}


def _mounts(sidecar: Sidecar) -> dict[str, dict[str, object]]:
    return {m["mountPath"]: m for m in sidecar.container["volumeMounts"]}


def test_container_runs_cdc_agent_with_the_nodes_properties(sidecar: Sidecar) -> None:
    c = sidecar.container
    assert c["name"] == CONTAINER
    assert c["command"] == ["cdc-agent"]
    env = _env(sidecar)
    assert env["CDC_AGENT_CONFIG"] == "/etc/debezium/$(POD_NAME).properties"
    pod_name = next(e for e in c["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # $(POD_NAME) only expands when POD_NAME is defined earlier in the list.
    assert [e["name"] for e in c["env"]].index("POD_NAME") == 0
    assert env["CDC_AGENT_CASSANDRA"] == "127.0.0.1:9042"
    assert c["ports"] == [{"name": "cdc-agent", "containerPort": 8090, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8090}
    assert "readinessProbe" not in c  # must never take the Cassandra node out of its Service


def test_mounts_match_the_paths_the_operator_renders(sidecar: Sidecar) -> None:
    mounts = _mounts(sidecar)
    for key in ("cassandra.config", "cassandra.driver.config.file"):
        parent = DEFAULTS[key].rsplit("/", 1)[0]
        assert parent in mounts, key
        assert mounts[parent]["readOnly"] is True
    for key in ("offset.backing.store.dir", "commit.log.relocation.dir"):
        assert DEFAULTS[key].startswith("/var/lib/debezium/"), key
    assert mounts["/var/lib/debezium"] == {
        "name": "server-data",
        "mountPath": "/var/lib/debezium",
        "subPath": "debezium",
    }
    assert mounts["/var/lib/cassandra"]["name"] == "server-data"  # commitlog and cdc_raw
    assert mounts["/etc/cassandra"]["name"] == "server-config"
    # ConfigMap updates never reach a subPath mount: the properties must be mounted whole.
    assert "subPath" not in mounts["/etc/debezium"]


def test_volumes_bring_both_configmaps_and_tmp(sidecar: Sidecar) -> None:
    vols = {v["name"]: v for v in sidecar.volumes}
    sources = vols["cdc-agent-config"]["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == [
        connector_name("shop"),
        "shop-agent-driver",
    ]
    assert "emptyDir" in vols["cdc-agent-tmp"]
    mounted = {m["name"] for m in sidecar.container["volumeMounts"]}
    # Every mount is either a volume brought here or one cass-operator's Pod already has.
    assert mounted - set(vols) == {"server-data", "server-config"}


def test_security_and_overrides() -> None:
    s = agent_sidecar(
        "p",
        "img",
        config_file="node1.properties",
        data_volume="data",
        cassandra_config_volume="conf",
        port=9000,
        run_as=1001,
        resources={"limits": {"memory": "2Gi"}},
    )
    sc = s.container["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (1001, 1001, True)
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert _env(s)["CDC_AGENT_CONFIG"] == "/etc/debezium/node1.properties"
    assert _env(s)["CDC_AGENT_PORT"] == "9000"
    assert s.container["resources"] == {"limits": {"memory": "2Gi"}}
    assert {m["name"] for m in s.container["volumeMounts"]} >= {"data", "conf"}


def test_pod_template_patch_is_plain_yaml(sidecar: Sidecar) -> None:
    patch = sidecar.pod_template_patch()
    assert patch["spec"]["containers"] == [sidecar.container]
    assert patch["spec"]["volumes"] == sidecar.volumes
    assert yaml.safe_load(yaml.safe_dump(patch)) == patch


def test_driver_configmap_points_at_the_node_itself() -> None:
    cm = driver_configmap("ns", "shop", "dc1", cql_port=9142)
    assert cm["metadata"]["name"] == "shop-agent-driver"
    assert cm["metadata"]["labels"]["casscdc.io/pipeline"] == "shop"
    conf = cm["data"]["application.conf"]
    assert conf == driver_conf("dc1", 9142)
    assert '"127.0.0.1:9142"' in conf
    assert "local-datacenter = dc1" in conf
    assert conf.count("{") == conf.count("}")


def test_secure_hops_log_in_from_the_login_secret_and_trust_the_ca(sidecar: Sidecar) -> None:
    plain = _env(sidecar)
    assert not [k for k in plain if k.startswith(("KAFKA_", "CASSANDRA_"))]
    assert "cdc-agent-login" not in {v["name"] for v in sidecar.volumes}

    s = agent_sidecar("shop", "img:1", kafka_login=True, cassandra_login=True, cassandra_tls=True)
    env = _env(s)
    assert env["KAFKA_USERNAME_FILE"] == "/etc/cdc-agent/login/kafka-username"
    assert env["KAFKA_PASSWORD_FILE"] == "/etc/cdc-agent/login/kafka-password"
    assert env["CASSANDRA_USERNAME_FILE"] == "/etc/cdc-agent/login/cassandra-username"
    assert env["CASSANDRA_PASSWORD_FILE"] == "/etc/cdc-agent/login/cassandra-password"
    assert env["CASSANDRA_CA_FILE"] == "/etc/debezium/cassandra-ca.pem"
    assert not [k for k in env if k.endswith(("_USERNAME", "_PASSWORD"))]  # files only
    vols = {v["name"]: v for v in s.volumes}
    assert vols["cdc-agent-login"]["secret"]["secretName"] == login_secret_name("shop")
    assert _mounts(s)["/etc/cdc-agent/login"] == {
        "name": "cdc-agent-login", "mountPath": "/etc/cdc-agent/login", "readOnly": True,
    }  # fmt: skip
    only_kafka = _env(agent_sidecar("shop", "img:1", kafka_login=True, login_secret="mine"))
    assert "CASSANDRA_USERNAME_FILE" not in only_kafka
    assert "KAFKA_USERNAME_FILE" in only_kafka

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    cm = driver_configmap("ns", "shop", "dc1", cassandra_ca=pem)
    assert cm["data"]["cassandra-ca.pem"] == pem
    assert "cassandra-ca.pem" not in driver_configmap("ns", "shop", "dc1")["data"]
