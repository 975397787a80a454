"""Chaos under load (issue #15 section 5): faults injected into the production topology while a
steady write load runs, then PostgreSQL compared with Cassandra row by row.

Runs against the SEPARATE topology stack (3-node ring with a supervised agent per node, 3 KRaft
brokers; `make bench-chaos` starts it with the Makefile's TOPOLOGY_ENV and stops it after):
three `cdc-worker run` processes of one consumer group with the config the operator renders, a
load of >= 500 writes/s (inserts, partial updates, cell/row/range/partition deletes, TTL writes;
LOCAL_QUORUM and ONE; a table with a clustering key and a simple one), markers for the
end-to-end latency, and the faults below one at a time, then overlapping. Per fault: when the
broken part was back, the first marker applied after the fault, the recovery (every marker back
under the lag threshold), the largest end-to-end lag, lost markers, and the alerts that fired.
After the drain: rows compared (every column, Cassandra at ALL), differences, dead letters.

Prints the table with the targets marked met / not met and writes bench-results/chaos_bench.json
with the load average at each phase (the machine is shared: 2 cores).

    make bench-chaos
    CHAOS_RATE=600 CHAOS_WORKER_KILLS=10 CHAOS_ALERTS=1 make bench-chaos
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import _stack_env  # noqa: E402
from tests.topology import chaos_faults as faults  # noqa: E402
from tests.topology.chaos_rig import stack, topology_state  # noqa: E402
from tests.topology.chaos_run import Result, Step, named, run, worker_kills  # noqa: E402

COMPONENTS = ("postgres", "redis", "vault", "kafka", "cassandra", "debezium")


def plan(kills: int, settle: float) -> list[Step]:
    one_at_a_time = [
        *worker_kills(kills, settle),
        Step(named("agent SIGKILL", faults.kill_agent), settle),
        Step(named("Cassandra node SIGKILL", faults.kill_cassandra), settle + 10),
        Step(named("Kafka broker SIGKILL", faults.kill_broker), settle + 10),
        Step(named("PostgreSQL restart", faults.restart_postgres), settle),
        Step(named("Redis outage", faults.outage("redis", "redis")), settle),
        Step(named("OpenBao outage", faults.outage("vault", "openbao")), settle),
        Step(named("operator SIGKILL", faults.kill_operator), settle),
        Step(named("rebalance 3->1->3", faults.rebalance), settle),
    ]
    overlapping = [
        Step(
            faults.together(
                "overlap: worker + broker SIGKILL",
                lambda p: faults.kill_worker(p, 0),
                lambda p: faults.kill_broker(p, 3),
            ),
            settle + 10,
        ),
        Step(
            faults.together(
                "overlap: Cassandra node + PostgreSQL restart + Redis outage",
                lambda p: faults.kill_cassandra(p, 2),
                faults.restart_postgres,
                faults.outage("redis", "redis"),
            ),
            settle + 10,
        ),
        Step(
            faults.together(
                "overlap: agent + worker SIGKILL + PostgreSQL restart",
                lambda p: faults.kill_agent(p, 3),
                lambda p: faults.kill_worker(p, 2),
                faults.restart_postgres,
            ),
            settle + 10,
        ),
    ]
    if os.environ.get("CHAOS_SHORT") == "1":  # the faults that fit a short session
        keep = ("agent", "Cassandra", "Kafka", "PostgreSQL", "rebalance")
        return [s for s in one_at_a_time if s.fault.__name__.startswith(("worker", *keep))]
    return one_at_a_time + overlapping


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def report(result: Result) -> str:
    lines = [f"{'fault':<58} {'back':>6} {'first':>6} {'recov':>6} {'maxlag':>7} {'lost':>5} "
             f"{'target':>7}  met"]  # fmt: skip
    for r in result.rows:
        met = "-" if r.met is None else ("met" if r.met else "NOT MET")
        target = "-" if r.target_s is None else f"<={r.target_s:.0f}"
        lines.append(f"{r.fault[:58]:<58} {_s(r.restored_s):>6} {_s(r.first_applied_s):>6} "
                     f"{_s(r.recovery_s):>6} {_s(r.max_lag_s):>7} {r.lost_markers:>5} "
                     f"{target:>7}  {met}")  # fmt: skip
        for what in ("fired", "resolved"):
            if r.alerts.get(what):
                lines.append(f"    alerts {what}: {', '.join(r.alerts[what])}")
    s = result.steady
    lines.append("")
    lines.append(f"steady state: e2e p50 {_s(s['e2e_p50_s'])} s, p95 {_s(s['e2e_p95_s'])} s "
                 f"(target <= {s['target_p95_s']} s: {'met' if s['met'] else 'NOT MET'}), "
                 f"p99 {_s(s['e2e_p99_s'])} s, {s['markers']} markers")  # fmt: skip
    ld = result.load
    lines.append(f"load: {ld['writes']} writes in {ld['seconds']} s = {ld['writes_per_s']}/s, "
                 f"{ld['failed']} failed {ld['errors']}; ack ms LOCAL_QUORUM "
                 f"{ld['ack_ms_LOCAL_QUORUM']}, ONE {ld['ack_ms_ONE']}")  # fmt: skip
    for c in result.comparisons:
        lines.append(f"table {c.table}: Cassandra {c.cassandra_rows} rows, PostgreSQL "
                     f"{c.postgres_rows}; missing {c.missing}, extra {c.extra}, "
                     f"different {c.different}")  # fmt: skip
        lines += [f"    {x}" for x in c.samples]
    lines.append(f"differences: {result.differences()}; drained: {result.drained}; "
                 f"dead letters: {len(result.dead_letters)}")  # fmt: skip
    lines.append(f"hops: {result.hops}; load average: {result.loadavg}")
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"signal {signum}")  # so the run's cleanup stops the workers it started


def main() -> int:
    topology_state()  # refuses the default stack
    signal.signal(signal.SIGTERM, _terminate)
    stack("up", *COMPONENTS)
    env = _stack_env()
    kills = int(os.environ.get("CHAOS_WORKER_KILLS", "10"))
    settle = float(os.environ.get("CHAOS_SETTLE", "20"))
    alerts: Any = None
    if os.environ.get("CHAOS_ALERTS", "1") == "1":
        try:
            from tests.topology.chaos_alerts import AlertWatch

            alerts = AlertWatch()
        except ImportError as e:  # the Prometheus harness is not there: say so in the result
            print(f"alerts not watched: {e}")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        result = run(env, Path(tmp), plan(kills, settle),
                     rate=float(os.environ.get("CHAOS_RATE", "600")),
                     warmup=float(os.environ.get("CHAOS_WARMUP", "60")), alerts=alerts,
                     operator=os.environ.get("CHAOS_OPERATOR", "1") == "1",
                     catch_up=float(os.environ.get("CHAOS_CATCH_UP", "240")))  # fmt: skip
    print()
    print(report(result))
    doc = {"bench": "chaos", "started": started, "minutes": round((time.time() - started) / 60, 1),
           **result.to_json()}  # fmt: skip
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "chaos_bench.json").write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nwrote {out / 'chaos_bench.json'}")
    return 0 if result.differences() == 0 and not result.dead_letters else 1


if __name__ == "__main__":
    sys.exit(main())
