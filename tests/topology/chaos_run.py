"""One chaos run: load + markers + workers on the topology stack, a plan of faults, the proof.

Shared by `bench/chaos_bench.py` (the full plan, `make bench-chaos`) and
`tests/topology/test_chaos.py` (a reduced plan). The steady state before the first fault gives
the end-to-end P95 and the lag threshold a marker must exceed to count as late (twice that P95,
at least 2 s); each fault's row is read from the markers between its injection and the next
fault (chaos_markers.recovery).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cassandra import ConsistencyLevel
from confluent_kafka import KafkaException

from tests.support.worker_proc import wait_for
from tests.topology import chaos_faults as faults
from tests.topology.chaos_load import OK, QUORUM, LoadRecord, LoadSpec
from tests.topology.chaos_load import run as run_load
from tests.topology.chaos_markers import Marker, Markers, recovery
from tests.topology.chaos_rig import Comparison, Pipeline, cassandra_session, converge

# Recovery targets (s) per fault kind: issue #15 section 5. None: no target stated.
TARGETS: dict[str, float | None] = {
    "worker": 15.0, "rebalance": 15.0, "kafka": 60.0, "cassandra": 60.0, "overlap": 60.0,
    "agent": None, "postgres": None, "redis": None, "openbao": None, "operator": None,
}  # fmt: skip
E2E_P95_TARGET = 1.0

Fault = Callable[[Pipeline], faults.Injected]


@dataclass
class Step:
    fault: Fault
    settle: float = 20.0  # s of steady load after the fault is undone, before the next one


@dataclass
class Row:
    fault: str
    kind: str
    injected_at: float
    restored_s: float | None
    first_applied_s: float | None
    recovery_s: float | None
    max_lag_s: float | None
    markers: int
    lost_markers: int
    target_s: float | None
    met: bool | None
    alerts: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    rows: list[Row]
    steady: dict[str, Any]
    load: dict[str, Any]
    comparisons: list[Comparison]
    dead_letters: list[dict[str, str]]
    drained: bool
    hops: dict[str, str]
    workers: int
    loadavg: dict[str, list[float]]
    alerts_note: str

    def differences(self) -> int:
        return sum(c.differences for c in self.comparisons)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["differences"] = self.differences()
        return d


def _retry(f: Callable[[], Any], tries: int = 20) -> Any:
    for _ in range(tries - 1):
        try:
            return f()
        except KafkaException:
            time.sleep(3)
    return f()


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _agents_capture(env: dict[str, str]) -> Callable[[list[str]], bool]:
    def ready(tables: list[str]) -> bool:
        for url in env["CDC_AGENT_URLS"].split(","):
            try:
                with urllib.request.urlopen(f"{url}/status", timeout=3) as r:  # noqa: S310
                    s = json.loads(r.read())
            except (OSError, ValueError):
                return False
            if s.get("phase") != "ready" or not all(t in s.get("agent_tables", ()) for t in tables):
                return False
        return True

    return ready


def _load_summary(rec: LoadRecord, t0: float, t1: float) -> dict[str, Any]:
    n = len(rec.flags)
    ok = [i for i in range(n) if rec.flags[i] & OK]
    out: dict[str, Any] = {
        "writes": n,
        "acknowledged": len(ok),
        "failed": n - len(ok),
        "errors": rec.errors,
        "seconds": round(t1 - t0, 1),
        "writes_per_s": round(n / max(1e-9, t1 - t0), 1),
    }
    for name, want in (("LOCAL_QUORUM", QUORUM), ("ONE", 0)):
        lat = [rec.latency[i] for i in ok if rec.flags[i] & QUORUM == want]
        out[f"ack_ms_{name}"] = {
            "n": len(lat),
            "p50": _pct(lat, 0.5),
            "p95": _pct(lat, 0.95),
            "p99": _pct(lat, 0.99),
            "max": max(lat, default=None),
        }
    return out


def _steady(markers: list[Marker], t0: float, t1: float) -> dict[str, Any]:
    e2e = [m.e2e for m in markers if t0 <= m.acked <= t1 and m.e2e is not None]
    p95 = _pct(e2e, 0.95)
    return {
        "markers": len(e2e),
        "seconds": round(t1 - t0, 1),
        "e2e_p50_s": _pct(e2e, 0.5),
        "e2e_p95_s": p95,
        "e2e_p99_s": _pct(e2e, 0.99),
        "e2e_max_s": max(e2e, default=None),
        "target_p95_s": E2E_P95_TARGET,
        "met": None if p95 is None else p95 <= E2E_P95_TARGET,
    }


def _caught_up(m: Markers, threshold: float) -> bool:
    now = time.time()
    return not [x for x in m.pending() if now - x.acked > threshold]


def run(
    env: dict[str, str],
    tmp: Path,
    plan: list[Step],
    *,
    rate: float = 600.0,
    workers: int = 3,
    warmup: float = 60.0,
    drain_timeout: float = 600.0,
    alerts: Any = None,
    operator: bool = False,
    catch_up: float = 240.0,
    log: Callable[[str], None] = print,
) -> Result:
    """Set up, load, fault, drain, compare. `alerts`, when given, is an object with
    `start(pipeline)`, `during(t0, t1) -> {"fired": [...], "resolved": [...]}` and `stop()`
    (bench/chaos_bench.py wires tests/support/prometheus.py into it)."""
    tmp.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(env, tmp)
    admin_cluster, session = cassandra_session(env, ConsistencyLevel.LOCAL_QUORUM)
    loads: dict[str, list[float]] = {"start": loadavg()}
    try:
        log(f"pipeline {pipeline.name}: topics, RF=3 keyspace, waiting for every agent")
        pipeline.create(session, _agents_capture(env))
        for _ in range(workers):
            pipeline.add_worker()
        ctx = mp.get_context("spawn")
        stop, progress = ctx.Event(), ctx.Value("q", 0)
        spec = LoadSpec(env, pipeline.keyspace, rate, str(tmp))
        load = ctx.Process(target=run_load, args=(spec, stop, progress), daemon=True)
        load.start()
        load_t0 = time.time()
        markers = Markers(session, pipeline.keyspace, env["PG_DSN"], f'"{pipeline.schema}".kv')
        markers.start()
        if operator:
            from tests.topology.chaos_operator import OperatorPart

            log("operator: a process on the default stack's control plane, workers at 0")
            pipeline.operator = OperatorPart(pipeline, tmp)
            # On its own thread: a Python start takes minutes at a load average of 40+, and
            # the load and the worker faults need not wait for it (its faults come later;
            # they say so in their row if it never kept the status).
            threading.Thread(target=pipeline.operator.start_quietly, args=(log,),
                             daemon=True).start()  # fmt: skip
        if alerts is not None:
            alerts.start(pipeline)
        log(f"load at {rate:.0f} writes/s, {workers} workers; waiting for the first marker")

        def flowing() -> bool:
            return progress.value > 0 and any(m.visible for m in markers.snapshot())

        wait_for(flowing, 600, "the load running and a marker visible in PostgreSQL")
        log(f"pipeline flowing after {time.time() - load_t0:.0f} s; catching up")
        # The load ran while workers started: measure the steady state only once no marker
        # is older than 5 s and still unseen (else it measures the start-up backlog).
        wait_for(lambda: _caught_up(markers, 5.0), 900, "the workers catching up with the load")
        log(f"caught up after {time.time() - load_t0:.0f} s; warm-up {warmup:.0f} s")
        time.sleep(warmup)
        steady_t1 = time.time()
        steady = _steady(markers.snapshot(), steady_t1 - warmup * 2 / 3, steady_t1)
        steady["writes_sent"] = progress.value
        loads["steady"] = loadavg()
        threshold = max(2.0, 2 * (steady["e2e_p95_s"] or 1.0))
        log(f"steady state: {json.dumps(steady)}; late threshold {threshold:.1f} s")
        injected: list[faults.Injected] = []
        for step in plan:
            log(f"fault: {getattr(step.fault, '__name__', step.fault)} ...")
            inj = step.fault(pipeline)
            injected.append(inj)
            log(f"  {inj.fault}: back after {inj.restored or 0:.1f} s; settling")
            time.sleep(step.settle)
            deadline = time.monotonic() + catch_up
            while not _caught_up(markers, threshold) and time.monotonic() < deadline:
                time.sleep(1)
        loads["faults"] = loadavg()
        stop.set()
        markers.stop_writing()
        load.join(120)
        load_t1 = time.time()
        log("load stopped; draining")
        marks_end = time.time()
        wait_deadline = time.monotonic() + drain_timeout
        drained = False
        while time.monotonic() < wait_deadline:
            if _caught_up(markers, 0) and pipeline.drained():
                drained = True
                break
            time.sleep(2)
        markers.stop()
        all_markers = markers.snapshot()
        rows: list[Row] = []
        for i, inj in enumerate(injected):
            t_end = injected[i + 1].injected if i + 1 < len(injected) else marks_end
            r = recovery(all_markers, inj.injected, t_end, threshold)
            target = TARGETS.get(inj.kind)
            rec = r.recovered
            met = None if target is None or rec is None else rec <= target and r.lost == 0
            row = Row(inj.fault, inj.kind, inj.injected, inj.restored, r.first_applied, rec,
                      r.max_lag, r.markers, r.lost, target, met, notes=inj.notes)  # fmt: skip
            if alerts is not None:
                row.alerts = alerts.during(inj.injected, t_end)
            rows.append(row)
        log("comparing PostgreSQL with Cassandra (ALL) row by row")
        all_cluster, all_session = cassandra_session(env, ConsistencyLevel.ALL)
        try:
            comparisons = converge(all_session, pipeline, timeout=300)
        finally:
            all_cluster.shutdown()
        dead = _retry(pipeline.dead_letters)  # leadership may still move after a broker kill
        loads["end"] = loadavg()
        rec_load = LoadRecord.read(str(tmp))
        load_summary = _load_summary(rec_load, load_t0, load_t1)
        load_summary["marker_writes_failed"] = markers.failed_writes
        load_summary["markers"] = len(all_markers)
        # every marker (seq, acked, visible) for analysis after the run
        load_summary["marker_log"] = [(m.seq, round(m.acked, 3), m.visible and round(m.visible, 3))
                                      for m in all_markers]  # fmt: skip
        note = "" if alerts is not None else "Prometheus not wired in this run"
        if sum(c.differences for c in comparisons) == 0 and not dead:
            pipeline.drop(session)  # kept for inspection otherwise
        return Result(rows, steady, load_summary, comparisons, dead, drained, pipeline.hops(),
                      workers, loads, note)  # fmt: skip
    finally:
        if alerts is not None:
            alerts.stop()
        if pipeline.operator is not None:
            pipeline.operator.stop()
        pipeline.stop()
        admin_cluster.shutdown()


def worker_kills(n: int, settle: float) -> list[Step]:
    out = []
    for i in range(n):

        def kill(p: Pipeline, i: int = i) -> faults.Injected:
            return faults.kill_worker(p, i)

        kill.__name__ = f"worker SIGKILL #{i + 1}"
        out.append(Step(kill, settle))
    return out


def named(name: str, f: Fault) -> Fault:
    f.__name__ = name
    return f


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
