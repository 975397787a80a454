"""`cdc-agent`: the console entry point; wires settings, probes, HTTP and signals together.

SIGTERM/SIGINT are forwarded to the agent at once (its own shutdown flushes offsets), then the
loop ends and waits for it up to `stop_timeout` before killing it: the container's grace period
(or the stack's 30 s) must be longer.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

import structlog

from cdc_worker.agent.capture import CaptureMonitor
from cdc_worker.agent.config import parse_args
from cdc_worker.agent.driver import DriverSetupError, cassandra_login
from cdc_worker.agent.http import serve
from cdc_worker.agent.probe import CassandraProbe
from cdc_worker.agent.supervisor import Supervisor
from cdc_worker.observe import setup_logging

TICK = 0.5


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv)
    setup_logging(s.log_level)
    log = structlog.get_logger("cdc_agent")
    if not s.jar.is_file():
        print(f"cdc-agent: no connector jar at {s.jar}", file=sys.stderr)
        return 2
    try:
        login = cassandra_login(os.environ) or ("", "")
    except DriverSetupError as e:
        print(f"cdc-agent: {e}", file=sys.stderr)
        return 2
    cassandra = CassandraProbe(s.cassandra, *login, s.cassandra_ca, s.cassandra_verify_hostname)
    sup = Supervisor(s, cassandra)
    monitor = CaptureMonitor(sup)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        sup.stopping.set()
        if sup.child is not None:
            sup.child.signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = serve(s.port, sup)
    log.info("cdc_agent_started", port=s.port, config=str(s.config), jar=str(s.jar))
    next_probe = 0.0
    while not sup.stopping.is_set():
        now = time.monotonic()
        sup.step(now)
        if now >= next_probe:
            next_probe = now + s.health_interval
            monitor.probe()
        sup.stopping.wait(TICK)
    sup.stop_child()
    server.shutdown()
    cassandra.close()
    log.info("cdc_agent_stopped")
    return 0
