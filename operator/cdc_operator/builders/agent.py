"""The `cdc-agent` sidecar for a Cassandra Pod: container, volumes and the driver ConfigMap.

The Debezium agent must run beside each Cassandra node, in the node's Pod: it reads the node's
cassandra.yaml, commitlog and cdc_raw directory and deletes the segments it has processed. So
the operator does not deploy it; it renders what a cluster owner adds to the Cassandra Pod
template (cass-operator / K8ssandra `podTemplateSpec`, see docs/agent.md). Paths match the
defaults `builders.debezium.properties` renders:

- `/etc/debezium/`: a projected volume of the pipeline's connector ConfigMap (one
  `<node>.properties` per node) and `application.conf` (the driver's contact point: the node
  itself). Mounted whole, never with `subPath`, so ConfigMap updates reach the running Pod and
  cdc-agent restarts the agent on the new content.
- `/etc/cassandra/`: the node's configuration volume (cass-operator: `server-config`).
- `/var/lib/cassandra/`: the node's data volume (cass-operator: `server-data`), for commitlog and
  cdc_raw; `/var/lib/debezium/` is its `debezium/` sub-directory, so offsets survive restarts.

There is no readiness probe on purpose: a failing sidecar readiness would take the Cassandra
node out of its Service. Capture health is read from `/readyz` and `/metrics` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdc_operator.builders.names import connector_name, labels

CONTAINER = "cdc-agent"
CONFIG_VOLUME = "cdc-agent-config"
TMP_VOLUME = "cdc-agent-tmp"
LOGIN_VOLUME = "cdc-agent-login"
LOGIN_DIR = "/etc/cdc-agent/login"
DRIVER_CONF_KEY = "application.conf"
CASSANDRA_CA_KEY = "cassandra-ca.pem"
DEFAULT_JAR = "/opt/debezium/debezium-connector-cassandra-5-jar-with-dependencies.jar"


def driver_configmap_name(pipeline: str) -> str:
    return f"{pipeline}-agent-driver"[:63]


def driver_conf(local_dc: str, cql_port: int = 9042) -> str:
    """The DataStax driver config the agent reads (`cassandra.driver.config.file`)."""
    return (
        "datastax-java-driver {\n"
        f'  basic.contact-points = [ "127.0.0.1:{cql_port}" ]\n'
        f"  basic.load-balancing-policy.local-datacenter = {local_dc}\n"
        "  basic.request.timeout = 20 seconds\n"
        "  advanced.reconnect-on-init = true\n"
        "}\n"
    )


def login_secret_name(pipeline: str) -> str:
    """The Secret the Cassandra cluster's owner creates beside the Cassandra Pods for the agent:
    keys `kafka-username`/`kafka-password` (its SASL identity, when the pipeline's Kafka uses
    SASL) and `cassandra-username`/`cassandra-password` (its CQL role, when the pipeline logs in
    to Cassandra). The operator never copies a login into the Cassandra namespace itself."""
    return f"{pipeline}-agent-login"[:253]


def driver_configmap(
    namespace: str, pipeline: str, local_dc: str, cql_port: int = 9042,
    cassandra_ca: str | None = None, owner: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The driver's config and, when the pipeline reaches Cassandra over TLS, the CA that signed
    the nodes' certificates (public: a ConfigMap, not a Secret)."""
    data = {DRIVER_CONF_KEY: driver_conf(local_dc, cql_port)}
    if cassandra_ca:
        data[CASSANDRA_CA_KEY] = cassandra_ca
    meta: dict[str, Any] = {
        "name": driver_configmap_name(pipeline),
        "namespace": namespace,
        "labels": labels(pipeline, "agent"),
    }
    if owner:
        meta["ownerReferences"] = owner
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


@dataclass(frozen=True)
class Sidecar:
    """What to add to the Cassandra Pod template: one container and the volumes it brings."""

    container: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)

    def pod_template_patch(self) -> dict[str, Any]:
        """A `podTemplateSpec` fragment (cass-operator merges containers and volumes by name)."""
        return {"spec": {"containers": [self.container], "volumes": self.volumes}}


def agent_sidecar(
    pipeline: str,
    image: str,
    *,
    config_file: str = "$(POD_NAME).properties",
    data_volume: str = "server-data",
    cassandra_config_volume: str = "server-config",
    cql_port: int = 9042,
    port: int = 8090,
    java_opts: str = "-Xms256m -Xmx512m",
    run_as: int = 999,
    resources: dict[str, Any] | None = None,
    stall_after_seconds: int = 120,
    kafka_login: bool = False,
    cassandra_login: bool = False,
    cassandra_tls: bool = False,
    login_secret: str | None = None,
) -> Sidecar:
    """The sidecar running `cdc-agent` for `pipeline` from `image` (JRE + connector jar).

    `config_file` names this node's file in the connector ConfigMap; Kubernetes expands
    `$(POD_NAME)` per Pod, so it must match the operator's node ids (docs/agent.md).
    `run_as` must be the uid Cassandra runs as: the agent deletes segments from cdc_raw.
    `kafka_login`/`cassandra_login`: the agent logs in to Kafka (SASL) / Cassandra with the
    files of `login_secret` (default `login_secret_name`), mounted read-only and named by
    `*_FILE` variables, never copied into an environment value; `cassandra_tls`: the CA from
    the driver ConfigMap verifies the node's certificate.
    """
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CDC_AGENT_CONFIG", "value": f"/etc/debezium/{config_file}"},
        {"name": "CDC_AGENT_JAR", "value": DEFAULT_JAR},
        {"name": "CDC_AGENT_JAVA_OPTS", "value": f"{java_opts} -Djava.io.tmpdir=/tmp"},
        {"name": "CDC_AGENT_WORKDIR", "value": "/var/lib/debezium"},
        {"name": "CDC_AGENT_CASSANDRA", "value": f"127.0.0.1:{cql_port}"},
        {"name": "CDC_AGENT_PORT", "value": str(port)},
        {"name": "CDC_AGENT_STALL_AFTER_SECONDS", "value": str(stall_after_seconds)},
    ]
    if cassandra_tls:
        env.append({"name": "CASSANDRA_CA_FILE", "value": f"/etc/debezium/{CASSANDRA_CA_KEY}"})
    for hop, wanted in (("KAFKA", kafka_login), ("CASSANDRA", cassandra_login)):
        if wanted:
            key = hop.lower()
            env += [
                {"name": f"{hop}_USERNAME_FILE", "value": f"{LOGIN_DIR}/{key}-username"},
                {"name": f"{hop}_PASSWORD_FILE", "value": f"{LOGIN_DIR}/{key}-password"},
            ]
    mounts: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "mountPath": "/etc/debezium", "readOnly": True},
        {"name": cassandra_config_volume, "mountPath": "/etc/cassandra", "readOnly": True},
        {"name": data_volume, "mountPath": "/var/lib/cassandra"},
        {"name": data_volume, "mountPath": "/var/lib/debezium", "subPath": "debezium"},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
    ]
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["cdc-agent"],
        "env": env,
        "ports": [{"name": "cdc-agent", "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": resources
        or {"requests": {"cpu": "200m", "memory": "768Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {
            "runAsUser": run_as,
            "runAsGroup": run_as,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    volumes = [
        {
            "name": CONFIG_VOLUME,
            "projected": {
                "sources": [
                    {"configMap": {"name": connector_name(pipeline)}},
                    {"configMap": {"name": driver_configmap_name(pipeline)}},
                ]
            },
        },
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if kafka_login or cassandra_login:
        secret = login_secret or login_secret_name(pipeline)
        volumes.append({"name": LOGIN_VOLUME, "secret": {"secretName": secret,
                                                         "defaultMode": 0o440}})  # fmt: skip
        mounts.append({"name": LOGIN_VOLUME, "mountPath": LOGIN_DIR, "readOnly": True})
    return Sidecar(container=container, volumes=volumes)
