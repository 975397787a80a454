"""How long the worker's start took, phase by phase, counted from the process's exec.

apply → Ready of a pipeline is dominated by its worker's start (imports, connections, Kafka
accepting the login, then the readiness probe): one `worker_ready` log line gives each phase's
time since the process started, so the benchmark (bench/operator_bench.py) and anyone reading
a slow rollout can tell where the time went, without a profiler.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

log = structlog.get_logger("cdc_worker.startup")


def process_age() -> float:
    """Seconds since this process was exec'd (kernel clock, 10 ms resolution), 0 if unknown."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(stat[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started)


class Timeline:
    """Phase marks in seconds since exec; logged once, when the worker first answers ready."""

    def __init__(self) -> None:
        self._t0 = time.monotonic() - process_age()
        self.marks: dict[str, float] = {}
        self.done = False

    def mark(self, phase: str) -> None:
        self.marks.setdefault(phase, round(time.monotonic() - self._t0, 3))

    def ready(self) -> None:
        """The first `/readyz` answered 200: log the phases (once)."""
        if self.done:
            return
        self.done = True
        self.mark("first_ready_answer")
        log.info("worker_ready", seconds_since_exec=self.marks)
