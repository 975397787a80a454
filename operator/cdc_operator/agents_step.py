"""The Debezium agents' health, as the pipeline's status shows it (`AgentsReady`,
`CaptureHealthy`).

Each Cassandra node runs cdc-agent beside it (a sidecar; `spec.debezium.agentStatusPort`),
whose `/status` says whether the agent runs, and per table whether writes on that node reach
Kafka (worker/cdc_worker/agent). The operator reads it from every contact point and reports
how many agents are ready, and which of the pipeline's tables are not being captured. It is
reported, not required for `Ready`: an operator that cannot reach the nodes' sidecars (a
network policy) still runs the pipeline.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AgentsView:
    ready: int = 0
    total: int = 0
    unreachable: list[str] = field(default_factory=list)
    stalled: dict[str, list[str]] = field(default_factory=dict)  # table -> nodes
    not_captured: dict[str, list[str]] = field(default_factory=dict)  # table -> nodes


def fetch(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        url = f"http://{host}:{port}/status"  # a fixed scheme: the node's own sidecar
        with urllib.request.urlopen(url, timeout=timeout) as r:  # nosec B310
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def summarize(statuses: dict[str, dict[str, Any] | None], tables: list[str]) -> AgentsView:
    """`statuses`: node -> its /status (None: unreachable); `tables`: keyspace.table."""
    v = AgentsView(total=len(statuses))
    for node, st in sorted(statuses.items()):
        if st is None:
            v.unreachable.append(node)
            continue
        if st.get("phase") == "ready" and st.get("pid"):
            v.ready += 1
        captured = set(st.get("agent_tables") or [])
        for t in tables:
            if (st.get("tables") or {}).get(t, {}).get("stalled"):
                v.stalled.setdefault(t, []).append(node)
            if captured and t not in captured:
                v.not_captured.setdefault(t, []).append(node)
    return v


def conditions(v: AgentsView) -> list[tuple[str, bool | None, str, str]]:
    """(type, status, reason, message) for AgentsReady and CaptureHealthy."""
    if v.total == 0:
        return []
    Cond = tuple[str, bool | None, str, str]
    agents: Cond = (
        ("AgentsReady", True, "AllReady", f"{v.ready}/{v.total} agents ready")
        if v.ready == v.total
        else ("AgentsReady", False, "AgentsNotReady",
              f"{v.ready}/{v.total} agents ready"
              + (f"; unreachable: {', '.join(v.unreachable)}" if v.unreachable else ""))
    )  # fmt: skip
    if v.stalled or v.not_captured:
        parts = [f"{t} is not reaching Kafka from {', '.join(n)}" for t, n in v.stalled.items()]
        parts += [f"{t} is not captured by the agent on {', '.join(n)} (restart pending?)"
                  for t, n in v.not_captured.items()]  # fmt: skip
        capture: Cond = ("CaptureHealthy", False, "TableNotCaptured", "; ".join(parts))
    elif v.ready == 0:
        capture = ("CaptureHealthy", None, "NoAgentReachable", "no agent reported")
    else:
        capture = ("CaptureHealthy", True, "Capturing", "every table's writes reach Kafka")
    return [agents, capture]
