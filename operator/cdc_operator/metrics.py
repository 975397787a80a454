"""Prometheus metrics of the operator (served on CDC_OPERATOR_METRICS_PORT, default 9090)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "cdc_operator_reconciles", "Reconcile passes by result", ["namespace", "pipeline", "result"],
    registry=REGISTRY,
)  # fmt: skip
RECONCILE_SECONDS = Histogram(
    "cdc_operator_reconcile_duration_seconds", "Duration of one reconcile pass", ["namespace"],
    registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)  # fmt: skip
CONDITION = Gauge(
    "cdc_operator_pipeline_condition", "1 when the condition is True, else 0",
    ["namespace", "pipeline", "condition"], registry=REGISTRY,
)  # fmt: skip
SECRET_REFRESH_FAILURES = Counter(
    "cdc_operator_secret_refresh_failures", "Credential refreshes that failed, by reason",
    ["namespace", "pipeline", "reason"], registry=REGISTRY,
)  # fmt: skip
PIPELINE_LAG = Gauge(
    "cdc_operator_pipeline_lag_events", "Consumer-group lag of the pipeline's workers",
    ["namespace", "pipeline"], registry=REGISTRY,
)  # fmt: skip
PENDING = Gauge(
    "cdc_operator_pending_pipelines", "Pipelines with a spec or table change no pass covered yet",
    registry=REGISTRY,
)  # fmt: skip
LAST_PASS = Gauge(
    "cdc_operator_last_pass_timestamp_seconds", "When the last reconcile pass finished",
    registry=REGISTRY,
)  # fmt: skip
STALLED = Gauge(
    "cdc_operator_stalled", "1 while work is pending and no pass finished for the stall period",
    registry=REGISTRY,
)  # fmt: skip
API_REQUESTS = Counter(
    "cdc_operator_api_requests", "Kubernetes API requests made by reconcile passes, by verb "
    "(Kopf's own watches and patches are not counted)", ["verb"], registry=REGISTRY,
)  # fmt: skip
INFLIGHT = Gauge(
    "cdc_operator_passes_in_flight", "Reconcile passes running now (bounded by the pass limit)",
    registry=REGISTRY,
)  # fmt: skip
TABLE_IN_SYNC = Gauge(
    "cdc_operator_table_in_sync",
    "1 when the table's last verify found PostgreSQL equal to Cassandra, 0 when it differed",
    ["namespace", "table"], registry=REGISTRY,
)  # fmt: skip

_PER_PIPELINE = (RECONCILES, CONDITION, SECRET_REFRESH_FAILURES, PIPELINE_LAG)


def forget_pipeline(namespace: str, name: str) -> None:
    """A deleted pipeline's series go with it: its last `Ready` 0 would otherwise be exported
    for ever, and CdcPipelineNotReady fire for a pipeline that no longer exists."""
    for metric in _PER_PIPELINE:
        metric.remove_by_labels({"namespace": namespace, "pipeline": name})


def forget_table(namespace: str, table: str) -> None:
    """A deleted TableReplication's series go with it (CdcTableOutOfSync would stay firing)."""
    TABLE_IN_SYNC.remove_by_labels({"namespace": namespace, "table": table})
