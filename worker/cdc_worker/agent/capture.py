"""One health probe: local write counts, topic high watermarks and cdc_raw into the metrics.

Runs in the supervision loop every `health_interval` seconds. The topic prefix and Kafka
settings are re-read from the properties file each time, so a changed configuration is
followed without restarting the supervisor. A signal that cannot be read is counted in
`cdc_agent_probe_errors_total` and leaves the per-table state as it was (never "stalled" from
missing data alone).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from cdc_worker.agent import metrics as m
from cdc_worker.agent import props
from cdc_worker.agent.config import cdc_raw_dir, kafka_conf, topic_prefix
from cdc_worker.agent.probe import KafkaProbe, cdc_raw
from cdc_worker.agent.tables import TableId

if TYPE_CHECKING:
    from cdc_worker.agent.supervisor import Supervisor

log = structlog.get_logger("cdc_agent")


class CaptureMonitor:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self._kafka: tuple[dict[str, str], KafkaProbe] | None = None
        self.exported: set[TableId] = set()

    def kafka(self, conf: dict[str, str]) -> KafkaProbe:
        if self._kafka is None or self._kafka[0] != conf:
            self._kafka = (conf, KafkaProbe(conf))
        return self._kafka[1]

    def probe(self) -> None:
        sup = self.sup
        try:
            p = props.load(sup.s.config)
        except OSError as e:
            log.warning("config_unreadable", error=str(e))
            return
        tables = sup.known_tables
        now = time.time()
        writes: dict[TableId, int] | None = None
        emitted: dict[TableId, int | None] | None = None
        try:
            writes = sup.cassandra.local_writes()
        except Exception as e:
            m.PROBE_ERRORS.labels("cassandra").inc()
            log.warning("write_counts_failed", error=str(e))
        try:
            emitted = self.kafka(kafka_conf(p)).emitted(topic_prefix(p), tables)
        except Exception as e:
            m.PROBE_ERRORS.labels("kafka").inc()
            log.warning("high_watermarks_failed", error=str(e))
        sup.health.observe(now, tables, writes, emitted)
        for gone in self.exported - tables:
            m.forget_table(*gone)
        self.exported = set(tables)
        for (ks, table), st in sup.health.tables.items():
            m.EVENTS.labels(ks, table).inc(st.new_events)
            m.LOCAL_WRITES.labels(ks, table).inc(st.new_writes)
            m.EVENTS_RATE.labels(ks, table).set(st.events_per_second)
            if st.last_event is not None:
                m.LAST_EVENT.labels(ks, table).set(st.last_event)
            stalled = st.stalled(now, sup.health.stall_after)
            m.STALLED.labels(ks, table).set(1 if stalled else 0)
        raw = cdc_raw(cdc_raw_dir(sup.s, p), now)
        m.CDC_RAW_SEGMENTS.set(raw.segments)
        m.CDC_RAW_BYTES.set(raw.bytes)
        m.CDC_RAW_OLDEST.set(raw.oldest_age)
