"""Prometheus metrics of the worker; names are what monitoring/ dashboards and alerts use."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

EVENTS_CONSUMED = Counter(
    "cdc_worker_events_consumed", "Kafka messages consumed", ["pipeline", "table"],
    registry=REGISTRY,
)  # fmt: skip
EVENTS_APPLIED = Counter(
    "cdc_worker_events_applied", "Change events applied to PostgreSQL", ["pipeline", "table", "op"],
    registry=REGISTRY,
)  # fmt: skip
EVENTS_DEAD_LETTERED = Counter(
    "cdc_worker_events_dead_lettered", "Events sent to the dead-letter topic",
    ["pipeline", "table", "reason"], registry=REGISTRY,
)  # fmt: skip
ROWS_WRITTEN = Counter(
    "cdc_worker_rows_written", "Coalesced rows merged into PostgreSQL",
    ["pipeline", "state"],
    registry=REGISTRY,
)  # fmt: skip
BATCH_SIZE = Histogram(
    "cdc_worker_batch_size", "Events per batch", ["pipeline"], registry=REGISTRY,
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000),
)  # fmt: skip
BATCH_DURATION = Histogram(
    "cdc_worker_batch_duration_seconds", "Time per batch stage", ["pipeline", "stage"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
END_TO_END = Histogram(
    "cdc_worker_end_to_end_latency_seconds",
    "From the Cassandra write timestamp to the PostgreSQL commit", ["pipeline", "table"],
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)  # fmt: skip
CONSUMER_LAG = Gauge(
    "cdc_worker_consumer_lag", "Messages behind the partition's high watermark",
    ["pipeline", "topic", "partition"], registry=REGISTRY,
)  # fmt: skip
LAST_EVENT = Gauge(
    "cdc_worker_last_event_timestamp_seconds", "Write time of the newest applied event",
    ["pipeline", "table"], registry=REGISTRY,
)  # fmt: skip
ERRORS = Counter(
    "cdc_worker_errors", "Errors by kind (transient ones are retried)", ["pipeline", "kind"],
    registry=REGISTRY,
)  # fmt: skip
CIRCUIT_OPEN = Gauge(
    "cdc_worker_circuit_open", "1 while PostgreSQL writes are failing and backing off",
    ["pipeline"], registry=REGISTRY,
)  # fmt: skip
PAUSED = Gauge(
    "cdc_worker_paused", "1 while consumption is paused by the pipeline's pause flag", ["pipeline"],
    registry=REGISTRY,
)  # fmt: skip
DATA_GAP_EVENTS = Counter(
    "cdc_worker_data_gap_events", "Events Kafka no longer held when the worker reached them",
    ["pipeline", "topic"], registry=REGISTRY,
)  # fmt: skip
DATA_GAPS_OPEN = Gauge(
    "cdc_worker_data_gaps_open", "Recorded data gaps not yet acknowledged (after verify/repair)",
    ["pipeline"], registry=REGISTRY,
)  # fmt: skip
EXPIRED_ROWS_PENDING = Gauge(
    "cdc_worker_expired_rows_pending",
    "Rows whose next TTL expiry has passed but which the sweeper has not re-merged yet",
    ["pipeline", "table"], registry=REGISTRY,
)  # fmt: skip
EXPIRED_ROWS_SWEPT = Counter(
    "cdc_worker_expired_rows_swept", "Rows the TTL sweeper re-merged after a cell or row expired",
    ["pipeline", "table"], registry=REGISTRY,
)  # fmt: skip
QUARANTINED = Gauge(
    "cdc_worker_table_quarantined", "1 while the worker cannot serve the table (see its status)",
    ["pipeline", "table"], registry=REGISTRY,
)  # fmt: skip
