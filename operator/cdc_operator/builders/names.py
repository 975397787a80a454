"""Names and labels of everything the operator owns, derived from the pipeline."""

from __future__ import annotations

from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec

APP = "cass-cdc-pg"
LABEL_PIPELINE = "casscdc.io/pipeline"


def topic(spec: CdcPipelineSpec, tr: TableReplicationSpec) -> str:
    return f"{spec.debezium.topic_prefix}.{tr.source.keyspace}.{tr.source.table}"


def worker_name(pipeline: str) -> str:
    return f"{pipeline}-worker"[:63]


def connector_name(pipeline: str) -> str:
    return f"{pipeline}-debezium"[:63]


def secret_name(pipeline: str) -> str:
    return f"{pipeline}-credentials"[:63]


def service_account(pipeline: str) -> str:
    return f"{pipeline}-cdc"[:63]


def group_id(namespace: str, pipeline: str) -> str:
    return f"cdc.{namespace}.{pipeline}"


def labels(pipeline: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "cdc-operator",
        LABEL_PIPELINE: pipeline,
    }


def selector(pipeline: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": pipeline, "app.kubernetes.io/component": component,
            LABEL_PIPELINE: pipeline}  # fmt: skip
