"""Prometheus metrics of `cdc-agent`, all prefixed `cdc_agent_`, in their own registry.

Per-table series are labelled `keyspace`/`table` like the worker's; a table that stops being
`cdc = true` has its series removed so dashboards do not show stale tables.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge

from cdc_worker.agent.logscan import ERROR_KINDS, PHASES

REGISTRY = CollectorRegistry()
TABLE = ("keyspace", "table")

CHILD_RUNNING = Gauge(
    "cdc_agent_child_running", "1 while the Debezium agent process runs", registry=REGISTRY
)
PHASE = Enum(
    "cdc_agent_child_phase",
    "The agent's state from its own log: starting, ready (schema loaded), blind (no schema "
    "metadata: captures nothing), refresh_failed (new tables are not registered), stopped",
    states=PHASES,
    registry=REGISTRY,
)
RESTARTS = Counter(
    "cdc_agent_restarts",
    "Agent (re)starts by reason: exited (crash, with backoff), config, tables",
    ["reason"],
    registry=REGISTRY,
)
RESTART_HELD = Gauge(
    "cdc_agent_restart_held",
    "1 while a needed restart is held back because it would blind the agent (vector column)",
    registry=REGISTRY,
)
LOG_ERRORS = Counter(
    "cdc_agent_log_errors", "ERROR lines in the agent's log by kind", ["kind"], registry=REGISTRY
)
PROBE_ERRORS = Counter(
    "cdc_agent_probe_errors",
    "Failed reads of a health signal (cassandra, kafka)",
    ["target"],
    registry=REGISTRY,
)
TABLES = Gauge("cdc_agent_tables", "cdc = true tables in the cluster", registry=REGISTRY)
EVENTS = Counter(
    "cdc_agent_table_events",
    "Events that reached the table's topic (high-watermark growth; all nodes' agents)",
    TABLE,
    registry=REGISTRY,
)
EVENTS_RATE = Gauge(
    "cdc_agent_table_events_per_second",
    "High-watermark growth of the table's topic over the last probe interval",
    TABLE,
    registry=REGISTRY,
)
LAST_EVENT = Gauge(
    "cdc_agent_table_last_event_timestamp_seconds",
    "When the table's topic was last seen to grow (Unix time, probe resolution)",
    TABLE,
    registry=REGISTRY,
)
LOCAL_WRITES = Counter(
    "cdc_agent_table_local_writes",
    "Local writes to the table on this node (Cassandra's local_write_latency count)",
    TABLE,
    registry=REGISTRY,
)
STALLED = Gauge(
    "cdc_agent_table_capture_stalled",
    "1 when the table has local writes older than the stall limit and its topic did not move",
    TABLE,
    registry=REGISTRY,
)
CDC_RAW_SEGMENTS = Gauge(
    "cdc_agent_cdc_raw_segments", "Commitlog segments waiting in cdc_raw", registry=REGISTRY
)
CDC_RAW_BYTES = Gauge(
    "cdc_agent_cdc_raw_bytes", "Bytes of the segments waiting in cdc_raw", registry=REGISTRY
)
CDC_RAW_OLDEST = Gauge(
    "cdc_agent_cdc_raw_oldest_segment_age_seconds",
    "Time since the oldest waiting cdc_raw segment was last written",
    registry=REGISTRY,
)
PER_TABLE = (EVENTS, EVENTS_RATE, LAST_EVENT, LOCAL_WRITES, STALLED)

for _kind in ERROR_KINDS:
    LOG_ERRORS.labels(_kind)
for _reason in ("exited", "config", "tables"):
    RESTARTS.labels(_reason)
for _target in ("cassandra", "kafka"):
    PROBE_ERRORS.labels(_target)


def forget_table(keyspace: str, table: str) -> None:
    for metric in PER_TABLE:
        try:
            metric.remove(keyspace, table)
        except KeyError:
            continue
