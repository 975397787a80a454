"""The supervision loop: keep one agent running with the right configuration and tables.

Restarts: when the child exits (after a backoff that doubles up to a cap and resets once a
child has run `stable_after` seconds), when the properties file's content changes, and when a
`cdc = true` table appears that the child was not started with (not more often than
`min_restart_interval`; held back while a vector column would blind the new child). Signals
are read in this thread; the child's log is read by its pump thread and only sets fields.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import structlog

from cdc_worker.agent import metrics as m
from cdc_worker.agent import props
from cdc_worker.agent.child import Child, command
from cdc_worker.agent.config import Settings
from cdc_worker.agent.credentials import CredentialsMissing, remove_runtime, runtime_properties
from cdc_worker.agent.health import CaptureHealth
from cdc_worker.agent.logscan import Phase, error_kind, phase_after
from cdc_worker.agent.probe import CassandraProbe
from cdc_worker.agent.tables import TableId, diff

log = structlog.get_logger("cdc_agent")


def backoff(failures: int, base: float, cap: float) -> float:
    """Seconds to wait before restarting a child that died `failures` times in a row."""
    return 0.0 if failures <= 0 else min(cap, base * 2 ** (failures - 1))


class Supervisor:
    def __init__(self, s: Settings, cassandra: CassandraProbe) -> None:
        self.s = s
        self.cassandra = cassandra
        self.watch = props.FileWatch(s.config)
        self.health = CaptureHealth(s.stall_after)
        self.stopping = threading.Event()
        self.child: Child | None = None
        self.phase = Phase.STOPPED
        self.running_tables: frozenset[TableId] | None = None
        self.known_tables: frozenset[TableId] = frozenset()
        self.failures = 0
        self.next_start = 0.0
        self.started_at = 0.0
        self.last_planned = -1e9
        self.next_table_poll = 0.0
        self.held = ""
        self.restarts = 0
        self.last_tick = time.monotonic()
        self.runtime_dir = s.runtime_dir or Path(tempfile.mkdtemp(prefix="cdc-agent-"))

    # The child's log, from its pump thread.
    def on_line(self, line: str) -> None:
        new = phase_after(self.phase, line)
        if new is not self.phase:
            self._set_phase(new)
            level = log.info if new is Phase.READY else log.warning
            level("agent_phase", phase=new.value)
        kind = error_kind(line)
        if kind is not None:
            m.LOG_ERRORS.labels(kind).inc()

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        m.PHASE.state(phase.value)

    def start_child(self, now: float) -> None:
        self.held = ""
        m.RESTART_HELD.set(0)
        try:
            self.running_tables = self.cassandra.tables()
            self.known_tables = self.running_tables
        except Exception as e:  # the child retries Cassandra itself; the first poll sets it
            m.PROBE_ERRORS.labels("cassandra").inc()
            log.warning("tables_unknown_at_start", error=str(e))
            self.running_tables = None
        digest = self.watch.accept()
        try:
            config = runtime_properties(
                self.s.config, self.runtime_dir, os.environ, workdir=self.s.workdir,
                cassandra_trust=self.s.cassandra_trust(), java=self.s.java,
            )  # fmt: skip
        except (CredentialsMissing, OSError) as e:
            self.failures += 1
            delay = backoff(self.failures, self.s.backoff_base, self.s.backoff_max)
            hop = e.hop if isinstance(e, CredentialsMissing) else "kafka"
            log.error("agent_not_started", hop=hop, error=str(e), restart_in_s=delay)
            self.next_start = now + delay
            return
        cmd = command(self.s.java, self.s.java_opts, self.s.jar, config)
        self.child = Child(cmd, self.s.workdir, self.on_line)
        self._set_phase(Phase.STARTING)
        pid = self.child.start()
        self.started_at = now
        self.restarts += 1
        m.CHILD_RUNNING.set(1)
        log.info("agent_started", pid=pid, config=str(self.s.config), config_sha256=digest,
                 tables=len(self.running_tables or ()))  # fmt: skip

    def stop_child(self) -> None:
        if self.child is not None:
            code = self.child.stop(self.s.stop_timeout)
            log.info("agent_stopped", exit_code=code)
        self.child = None
        remove_runtime(self.runtime_dir)
        self._set_phase(Phase.STOPPED)
        m.CHILD_RUNNING.set(0)

    def restart(self, now: float, reason: str, **why: str) -> None:
        log.info("agent_restart", reason=reason, **why)
        m.RESTARTS.labels(reason).inc()
        self.last_planned = now
        self.stop_child()
        self.start_child(now)

    def step(self, now: float) -> None:
        self.last_tick = now
        if self.child is None or not self.child.running():
            if self.child is not None:
                code = self.child.returncode()
                self.failures += 1
                delay = backoff(self.failures, self.s.backoff_base, self.s.backoff_max)
                log.error("agent_exited", exit_code=code, restart_in_s=delay)
                m.RESTARTS.labels("exited").inc()
                self.stop_child()
                self.next_start = now + delay
            if now >= self.next_start and not self.stopping.is_set():
                self.start_child(now)
            return
        if now - self.started_at >= self.s.stable_after:
            self.failures = 0
        if self.watch.changed():
            self.restart(now, "config", config=str(self.s.config))
        elif now >= self.next_table_poll:
            self.next_table_poll = now + self.s.table_poll
            self.check_tables(now)

    def check_tables(self, now: float) -> None:
        try:
            tables = self.cassandra.tables()
        except Exception as e:
            m.PROBE_ERRORS.labels("cassandra").inc()
            log.warning("table_poll_failed", error=str(e))
            return
        self.known_tables = tables
        m.TABLES.set(len(tables))
        if self.running_tables is None:
            self.running_tables = tables
            return
        change = diff(self.running_tables, tables)
        self.running_tables -= change.removed  # a table dropped and created again is "added"
        if not change.needs_restart or now - self.last_planned < self.s.min_restart_interval:
            return
        try:
            vectors = self.cassandra.vector_columns()
        except Exception as e:
            m.PROBE_ERRORS.labels("cassandra").inc()
            log.warning("vector_check_failed", error=str(e))
            return
        if vectors:
            if not self.held:
                log.error("agent_restart_held", tables=change.describe(), vector_columns=vectors)
            self.held = (
                f"new cdc tables {change.describe()} need an agent restart, held back: "
                f"vector column(s) {', '.join(vectors)} would blind the agent"
            )
            m.RESTART_HELD.set(1)
            return
        self.restart(now, "tables", tables=change.describe())

    def readiness(self, now: float) -> tuple[bool, str]:
        if self.child is None or not self.child.running():
            return False, "the agent is not running"
        if self.phase is not Phase.READY:
            why = {Phase.BLIND: " (no schema metadata: a vector column?)"}.get(self.phase, "")
            return False, f"the agent is {self.phase.value}{why}"
        if self.held:
            return False, self.held
        stalled = self.health.stalled(time.time())
        if stalled:
            names = ", ".join(f"{k}.{t}" for k, t in stalled)
            return (
                False,
                f"no events for {names} despite local writes for > {self.s.stall_after:.0f}s",
            )
        return True, "ok"
