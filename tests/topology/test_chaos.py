"""Chaos under load, the short variant of `make bench-chaos` (issue #15 section 5).

A steady mixed load into the RF=3 ring, three workers of one group over the secure hops, and a
reduced fault list (two worker SIGKILLs, an agent SIGKILL, a broker SIGKILL and restart, a
PostgreSQL restart, a rebalance 3 -> 1 -> 3); after the drain PostgreSQL must equal Cassandra
row by row, with nothing in the dead-letter topic and no marker lost. Recovery times are printed,
not asserted here (the machine is shared; bench/chaos_bench.py holds the targets).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.topology import chaos_faults as faults
from tests.topology.chaos_run import Step, named, run, worker_kills

pytestmark = [pytest.mark.integration, pytest.mark.topology]


@pytest.fixture(scope="module")
def env(stack: Any) -> dict[str, str]:
    return stack("postgres", "redis", "kafka", "cassandra", "debezium")  # type: ignore[no-any-return]


def test_faults_under_load_lose_nothing(env: dict[str, str], tmp_path: Path) -> None:
    settle = 15.0
    plan = [
        *worker_kills(2, settle),
        Step(named("agent SIGKILL", faults.kill_agent), settle),
        Step(named("Kafka broker SIGKILL", faults.kill_broker), settle),
        Step(named("PostgreSQL restart", faults.restart_postgres), settle),
        Step(named("rebalance 3->1->3", lambda p: faults.rebalance(p, hold=15)), settle),
    ]
    rate = float(os.environ.get("CHAOS_RATE", "500"))
    result = run(env, tmp_path, plan, rate=rate, warmup=30)
    print(json.dumps(result.to_json(), indent=1, default=str))
    assert result.drained, "the workers never reached the end of every partition"
    assert result.dead_letters == [], result.dead_letters
    for c in result.comparisons:
        assert c.cassandra_rows > 0
        assert c.differences == 0, c
    assert sum(r.lost_markers for r in result.rows) == 0, result.rows
