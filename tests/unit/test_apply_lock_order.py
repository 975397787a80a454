"""Every worker takes the per-table advisory locks of one transaction in the same order.

Two workers whose batches held two tables in different orders deadlocked in PostgreSQL (the
chaos run, issue #15.5); `_lock_order` sorts a batch's tables by their lock key, whatever the
order the topics arrived in.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cdc_worker.apply import _lock_order
from cdc_worker.schema import schema_from_spec
from cdc_worker.target import DeleteMode, Target


def _prepared(*tables: str) -> list[tuple[str, Any]]:
    out = []
    for name in tables:
        schema = schema_from_spec("ks", name, ["p"], [], {"p": "int"})
        writer = SimpleNamespace(t=Target(schema, "s", name, DeleteMode.HARD))
        out.append((f"topic.{name}", (writer, None, "")))
    return out


def test_tables_are_locked_in_one_order_whatever_the_arrival_order() -> None:
    one = [topic for topic, _ in _lock_order(_prepared("ev", "kv", "orders"))]
    other = [topic for topic, _ in _lock_order(_prepared("orders", "kv", "ev"))]
    assert one == other
    keys = [w.t.lock_key for _, (w, _, _) in _lock_order(_prepared("kv", "ev", "orders"))]
    assert keys == sorted(keys)
