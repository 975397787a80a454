"""Kubernetes objects the operator owns for a pipeline, as plain dicts.

The worker Pod passes the "restricted" Pod Security Standard: non-root, no
privilege escalation, all capabilities dropped, RuntimeDefault seccomp, and a
read-only root filesystem with an emptyDir for /tmp. Credentials reach it only
through the owned Secret (env `secretKeyRef`); the pod template carries a hash of
the config and the Secret's resourceVersion, so a change of either rolls the workers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import yaml

from cdc_operator.builders import names
from cdc_operator.builders.names import (
    connector_name,
    labels,
    secret_name,
    selector,
    worker_name,
)
from cdc_operator.builders.worker_config import HTTP_PORT, ca_files
from cdc_operator.models import CdcPipelineSpec

CONFIG_PATH = "/etc/cdc/worker.yaml"
SECRET_KEYS = (
    "POSTGRES_USERNAME", "POSTGRES_PASSWORD", "KAFKA_USERNAME", "KAFKA_PASSWORD",
    "REDIS_PASSWORD", "CASSANDRA_USERNAME", "CASSANDRA_PASSWORD",
)  # fmt: skip
# The operator's own identity (kafka.operatorCredentials): kept in its memory, never written
# into the workers' Secret nor named in their Pods.
OPERATOR_KEYS = ("OPERATOR_KAFKA_USERNAME", "OPERATOR_KAFKA_PASSWORD")


def worker_secret_values(values: dict[str, str]) -> dict[str, str]:
    """Only the workers' keys (the operator's own are dropped; anything else is an error)."""
    unknown = set(values) - set(SECRET_KEYS) - set(OPERATOR_KEYS)
    if unknown:
        raise ValueError(f"unexpected credential keys {sorted(unknown)}")
    return {k: v for k, v in values.items() if k in SECRET_KEYS}


def config_items(spec: CdcPipelineSpec) -> list[dict[str, str]]:
    """The worker ConfigMap's files a worker or scan Pod mounts at /etc/cdc."""
    files = ["worker.yaml", *sorted(ca_files(spec))]
    return [{"key": f, "path": f} for f in files]


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def config_hash(config: Any, files: dict[str, str]) -> str:
    """The pod-template annotation: worker.yaml and, when there are any, the CA files."""
    return digest([config, files]) if files else digest(config)


def _meta(name: str, namespace: str, pipeline: str, component: str, owner: dict[str, Any]) -> Any:
    return {"name": name, "namespace": namespace, "labels": labels(pipeline, component),
            "ownerReferences": [owner]}  # fmt: skip


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def worker_configmap(
    ns: str, pipeline: str, owner: Any, config: Any, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """worker.yaml and the CA bundles (`worker_config.ca_files`) it points at."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _meta(worker_name(pipeline), ns, pipeline, "worker", owner),
        "data": {"worker.yaml": yaml.safe_dump(config, sort_keys=False),
                 **dict(sorted((files or {}).items()))},
    }  # fmt: skip


def connector_configmap(ns: str, pipeline: str, owner: Any, files: dict[str, str]) -> Any:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _meta(connector_name(pipeline), ns, pipeline, "debezium", owner),
        "data": dict(sorted(files.items())),
    }  # fmt: skip


def credentials_secret(ns: str, pipeline: str, owner: Any, values: dict[str, str]) -> Any:
    values = worker_secret_values(values)
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": _meta(secret_name(pipeline), ns, pipeline, "credentials", owner),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }  # fmt: skip


def service_account(ns: str, pipeline: str, owner: Any) -> dict[str, Any]:
    """The pipeline's own identity: Vault logins and the worker Pods (no token mounted)."""
    return {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": _meta(names.service_account(pipeline), ns, pipeline, "identity", owner),
        "automountServiceAccountToken": False,
    }  # fmt: skip


# The worker binds its HTTP port on the Pod IP: replicas that share a network namespace (the
# local node's Pods, see docs/local-node.md) do not collide, and a probe reaches its own Pod.
def http_host_env() -> dict[str, Any]:
    return {"name": "CDC_WORKER_HTTP_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}  # fmt: skip


def worker_container(
    pipeline: str, spec: CdcPipelineSpec, secret_keys: list[str], name: str, **fields: Any
) -> dict[str, Any]:
    """The container every Pod of the pipeline's workers (Deployment, scan Jobs) runs: the
    project's image, credentials only from the owned Secret, the "restricted" context."""
    res = spec.worker.resources
    resources = {
        kind: {k: v for k, v in q.model_dump().items() if v is not None}
        for kind, q in (("requests", res.requests), ("limits", res.limits))
    }
    env: list[dict[str, Any]] = [{"name": "CDC_WORKER_CONFIG", "value": CONFIG_PATH}]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name(pipeline), "key": k}}}
        for k in sorted(secret_keys)
        if k in SECRET_KEYS
    ]
    env.append(http_host_env())
    return {
        "name": name,
        "image": spec.worker.image,
        "imagePullPolicy": spec.worker.image_pull_policy,
        "env": env,
        "resources": {k: v for k, v in resources.items() if v},
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/cdc", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
        **fields,
    }  # fmt: skip


def worker_pod_spec(
    pipeline: str, spec: CdcPipelineSpec, container: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """The Pod around `worker_container`: the pipeline's own account (no token mounted), a
    non-root security context, worker.yaml (and CA files) from the worker ConfigMap."""
    return {
        "serviceAccountName": names.service_account(pipeline),
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                            "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "config",
                     "configMap": {"name": worker_name(pipeline), "items": config_items(spec)}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        **fields,
    }  # fmt: skip


def worker_deployment(
    ns: str,
    pipeline: str,
    owner: Any,
    spec: CdcPipelineSpec,
    config_hash: str,
    secret_version: str,
    secret_keys: list[str],
    replicas: int,
) -> dict[str, Any]:
    name = worker_name(pipeline)
    probe = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    container = worker_container(
        pipeline, spec, secret_keys, "worker",
        command=["cdc-worker", "run"],
        ports=[{"name": "http", "containerPort": HTTP_PORT}],
        # Readiness every second (the least Kubernetes allows): a new worker is ready about a
        # second after it starts, and each probe that found it still starting holds
        # apply → Ready back by a period (10 s once cost 10 s; 2 s cost 1 s on average).
        # A probe is one GET of an in-memory flag.
        readinessProbe={"httpGet": {"path": "/readyz", "port": "http"},
                        **probe, "periodSeconds": 1},
        livenessProbe={"httpGet": {"path": "/healthz", "port": "http"},
                       "initialDelaySeconds": 10, **probe},
    )  # fmt: skip
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, ns, pipeline, "worker", owner),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(pipeline, "worker")},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(pipeline, "worker"),
                    "annotations": {"casscdc.io/config-hash": config_hash,
                                    "casscdc.io/secret-version": secret_version,
                                    "prometheus.io/scrape": "true",
                                    "prometheus.io/port": str(HTTP_PORT)},
                },
                "spec": worker_pod_spec(pipeline, spec, container,
                                        terminationGracePeriodSeconds=60),
            },
        },
    }  # fmt: skip


def metrics_service(ns: str, pipeline: str, owner: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(worker_name(pipeline), ns, pipeline, "worker", owner),
        "spec": {"selector": selector(pipeline, "worker"),
                 "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}]},
    }  # fmt: skip


def pod_disruption_budget(ns: str, pipeline: str, owner: Any) -> dict[str, Any]:
    # One worker may always be down for maintenance: partitions move to the others (or wait).
    spec = {"selector": {"matchLabels": selector(pipeline, "worker")}, "maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(worker_name(pipeline), ns, pipeline, "worker", owner),
        "spec": spec,
    }  # fmt: skip
