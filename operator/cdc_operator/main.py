"""Run the operator in-process (`cdc-operator`), with kopf's own loop and probes."""

from __future__ import annotations

import asyncio
import os

import kopf
from prometheus_client import start_http_server

from cdc_operator import handlers as _handlers  # noqa: F401 - registers the handlers
from cdc_operator import logs
from cdc_operator.metrics import REGISTRY


def run(namespaces: list[str], log_level: str = "INFO") -> int:
    logs.install(log_level)
    liveness = os.environ.get("CDC_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz")
    metrics_port = int(os.environ.get("CDC_OPERATOR_METRICS_PORT", "9090"))
    if metrics_port:
        start_http_server(metrics_port, registry=REGISTRY)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            standalone=True,
        )
    )
    return 0
