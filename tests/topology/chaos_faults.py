"""The faults of the chaos run, injected through the processes the topology stack recorded.

Every kill goes to a PID read from the stack's own PID files (checked against the kernel start
time, `chaos_rig.recorded_pid`) or from cdc-agent's /status, never to a process name; restarts go
through `hack/stack up|restart <component>` of the topology stack, the way an operator (or a
kubelet) brings a member back. `chaos_rig.topology_state` refuses to run against the default stack.

A fault function injects and undoes its fault and returns when what it broke is back (the
stack's own health check passed), with the times: `injected` (wall clock), `restored` (seconds
after `injected`) and notes. Whether the pipeline kept up is read afterwards from the markers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.worker_proc import wait_for
from tests.topology.chaos_rig import REPO, Pipeline, recorded_pid, sigkill, stack


@dataclass
class Injected:
    fault: str
    kind: str  # a key of chaos_run.TARGETS: worker, agent, cassandra, kafka, ...
    injected: float
    restored: float | None = None  # s after injected: the broken part is back (stack healthy)
    notes: list[str] = field(default_factory=list)


def _agent_status(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=3) as r:  # noqa: S310 - local http
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def kill_worker(p: Pipeline, index: int, restart_after: float = 1.0) -> Injected:
    """SIGKILL one worker process; start it again (same config) like a kubelet restarting the
    container."""
    w = p.workers[index % len(p.workers)]
    out = Injected(f"worker {index % len(p.workers) + 1} SIGKILL", "worker", time.time())
    w.kill()
    time.sleep(restart_after)
    w.start()
    out.restored = time.time() - out.injected
    return out


def kill_agent(p: Pipeline, node: int = 2) -> Injected:
    """SIGKILL the Debezium agent JVM of one node (cdc-agent's child): cdc-agent restarts it."""
    url = p.env["CDC_AGENT_URLS"].split(",")[node - 1]
    before = _agent_status(url)
    supervisor = recorded_pid(f"debezium-{node}" if node > 1 else "debezium", "debezium")
    child = int(before["pid"])
    parent = int(open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[1])  # noqa: SIM115
    if parent != supervisor:
        raise RuntimeError(f"agent pid {child} is not a child of cdc-agent {supervisor}")
    out = Injected(f"agent of node {node} SIGKILL", "agent", time.time())
    sigkill(child)

    def back() -> bool:
        s = _agent_status(url)
        return s.get("starts", 0) > before.get("starts", 0) and s.get("phase") == "ready"

    wait_for(back, 180, f"cdc-agent of node {node} restarting its agent")
    out.restored = time.time() - out.injected
    out.notes.append("restarted by cdc-agent (the product's supervisor), not by the stack")
    return out


def kill_cassandra(p: Pipeline, node: int = 3, down_for: float = 15.0) -> Injected:
    pid = recorded_pid(f"cassandra-{node}" if node > 1 else "cassandra", "cassandra")
    out = Injected(f"Cassandra node {node} SIGKILL + restart", "cassandra", time.time())
    sigkill(pid)
    time.sleep(down_for)
    try:
        stack("up", "cassandra")
        out.notes.append(f"down {down_for:.0f} s, restarted by `hack/stack up cassandra`")
    except subprocess.CalledProcessError:
        # The stack's ring keeps system_auth at RF 1: when the roles live on the dead node,
        # `up` cannot log in on node 1 and stops before restarting the others. Start the
        # member itself through the stack's own class (same command, PID file, health check).
        code = f"from stackctl.cassandra_ring import CassandraNode; CassandraNode({node}).up()"
        subprocess.run([sys.executable, "-c", code], cwd=REPO / "hack", check=True, timeout=600)
        out.notes.append(
            f"down {down_for:.0f} s; `hack/stack up cassandra` failed (system_auth "
            "RF 1, roles on the dead node): started by CassandraNode.up()"
        )
    out.restored = time.time() - out.injected
    return out


def kill_broker(p: Pipeline, broker: int = 2, down_for: float = 15.0) -> Injected:
    pid = recorded_pid(f"kafka-{broker}" if broker > 1 else "kafka", "kafka")
    out = Injected(f"Kafka broker {broker} SIGKILL + restart", "kafka", time.time())
    sigkill(pid)
    time.sleep(down_for)
    stack("up", "kafka")
    out.restored = time.time() - out.injected
    out.notes.append(f"down {down_for:.0f} s, restarted by `hack/stack up kafka`")
    return out


def restart_postgres(p: Pipeline) -> Injected:
    out = Injected("PostgreSQL restart", "postgres", time.time())
    stack("restart", "postgres")
    out.restored = time.time() - out.injected
    out.notes.append("fast shutdown (SIGINT) and start: `hack/stack restart postgres`")
    return out


def outage(component: str, kind: str, down_for: float = 20.0) -> Callable[[Pipeline], Injected]:
    def run(p: Pipeline) -> Injected:
        out = Injected(f"{kind} outage ({down_for:.0f} s)", kind, time.time())
        stack("down", component)
        time.sleep(down_for)
        stack("up", component)
        if component == "vault" and p.operator is not None:
            p.operator.after_vault_restart()
            out.notes.append("credentials written back after the restart (dev server: in "
                             "memory); restored = the operator's SecretsReady again")  # fmt: skip
        elif component == "vault":
            out.notes.append("nothing in the data path reads OpenBao (no operator in this run)")
        out.restored = time.time() - out.injected
        return out

    return run


def kill_operator(p: Pipeline) -> Injected:
    if p.operator is None:
        out = Injected("operator SIGKILL (no operator in this run)", "operator", time.time())
        out.notes.append("skipped")
        return out
    return p.operator.kill(p)  # type: ignore[no-any-return]


def rebalance(p: Pipeline, hold: float = 25.0) -> Injected:
    """Scale 3 -> 1 -> 3: two workers stop (SIGTERM, they leave the group), later two start."""
    out = Injected("rebalance: workers 3 -> 1 -> 3", "rebalance", time.time())
    for w in p.workers[1:]:
        w.stop()
    time.sleep(hold)
    for w in p.workers[1:]:
        w.start()
    out.restored = time.time() - out.injected
    out.notes.append(f"1 worker for {hold:.0f} s")
    return out


def together(name: str, *faults: Callable[[Pipeline], Injected]) -> Callable[[Pipeline], Injected]:
    """Several faults at once (each on its own thread), one record."""

    def run(p: Pipeline) -> Injected:
        out = Injected(name, "overlap", time.time())
        results: list[Injected] = []
        errors: list[BaseException] = []

        def one(f: Callable[[Pipeline], Injected]) -> None:
            try:
                results.append(f(p))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=(f,)) for f in faults]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        out.restored = time.time() - out.injected
        out.notes += [f"{r.fault} (back after {r.restored:.1f} s)" for r in results]
        return out

    return run
