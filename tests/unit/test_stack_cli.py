"""hack/stack's ordering: up brings dependencies first; down never stops a dependency."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from stackctl.cli import _ordered, _with_dependents


def test_up_orders_dependencies_first() -> None:
    names = [c.name for c in _ordered(["debezium"])]
    assert names.index("kafka") < names.index("debezium")
    assert names.index("cassandra") < names.index("debezium")


def test_down_stops_dependents_but_not_dependencies() -> None:
    assert [c.name for c in _with_dependents(["debezium"])] == ["debezium"]
    down_kafka = [c.name for c in _with_dependents(["kafka"])]
    assert "debezium" in down_kafka
    assert down_kafka.index("debezium") < down_kafka.index("kafka")
    assert "postgres" not in down_kafka
