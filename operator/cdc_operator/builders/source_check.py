"""Which source tables the pipeline can replicate, and how exactly, from their CQL schema.

The connector's limits (docs/debezium-wire-format.md) decide it, before `cdc = true` is set:
- a `vector` column blinds the agent (its bundled driver cannot parse the schema) and a write
  to a non-frozen UDT breaks capture for every table: such tables are refused
  (`UnsupportedColumns`), and never get `cdc = true` from the operator;
- non-frozen collections arrive as deltas without their tombstones (an element removal looks
  like nothing, an overwrite like an append) and static columns are never emitted: such
  tables replicate, but not exactly (`Exact=False`, the reason per column).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NATIVE = {
    "ascii", "bigint", "blob", "boolean", "counter", "date", "decimal", "double", "duration",
    "float", "inet", "int", "smallint", "text", "time", "timestamp", "timeuuid", "tinyint",
    "uuid", "varchar", "varint",
}  # fmt: skip


@dataclass
class SourceVerdict:
    refused: list[str] = field(default_factory=list)  # "col (why)"
    inexact: dict[str, list[str]] = field(default_factory=dict)  # reason -> columns


def _words(cql_type: str) -> list[str]:
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", cql_type)


def judge(columns: dict[str, str], kinds: dict[str, str]) -> SourceVerdict:
    """`columns`: name -> CQL type as system_schema.columns spells it; `kinds`: name -> kind."""
    v = SourceVerdict()
    for name, t in sorted(columns.items()):
        t = t.strip()
        if "vector" in _words(t):
            v.refused.append(f"{name} (vector: blinds the agent)")
            continue
        top = t.split("<", 1)[0].strip()
        if top not in NATIVE | {"frozen", "list", "set", "map", "tuple"} and top:
            v.refused.append(f"{name} (non-frozen user type {top}: breaks capture)")
            continue
        if top in {"list", "set", "map"}:
            v.inexact.setdefault("NonFrozenCollection", []).append(name)
        if kinds.get(name) == "static":
            v.inexact.setdefault("StaticColumn", []).append(name)
    return v
