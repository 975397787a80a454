"""The pipeline's view of its agents: how many are ready, which tables are not captured."""

from __future__ import annotations

from cdc_operator.agents_step import conditions, summarize


def test_ready_agents_capturing_every_table() -> None:
    st = {"phase": "ready", "pid": 1, "agent_tables": ["ks.a", "ks.b"],
          "tables": {"ks.a": {"stalled": False}}}  # fmt: skip
    v = summarize({"n1": st, "n2": st}, ["ks.a", "ks.b"])
    assert (v.ready, v.total) == (2, 2)
    assert conditions(v) == [
        ("AgentsReady", True, "AllReady", "2/2 agents ready"),
        ("CaptureHealthy", True, "Capturing", "every table's writes reach Kafka"),
    ]


def test_a_stalled_table_and_an_unreachable_node_are_named() -> None:
    ok = {"phase": "ready", "pid": 1, "agent_tables": ["ks.a"],
          "tables": {"ks.a": {"stalled": True}}}  # fmt: skip
    v = summarize({"n1": ok, "n2": None}, ["ks.a", "ks.b"])
    agents, capture = conditions(v)
    assert agents[:3] == ("AgentsReady", False, "AgentsNotReady")
    assert "1/2 agents ready; unreachable: n2" in agents[3]
    assert capture[:3] == ("CaptureHealthy", False, "TableNotCaptured")
    assert "ks.a is not reaching Kafka from n1" in capture[3]
    assert "ks.b is not captured by the agent on n1" in capture[3]


def test_no_agent_port_means_no_conditions() -> None:
    assert conditions(summarize({}, ["ks.a"])) == []
