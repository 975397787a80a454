"""Build Debezium Cassandra change events in the exact shape the real connector emits.

The shape follows the captured fixtures in tests/fixtures/debezium/: every column
is listed in `after`, `null` for columns the mutation did not write.
"""

from __future__ import annotations

from typing import Any

import orjson

SOURCE = {
    "version": "3.4.1.Final", "connector": "cassandra", "name": "casscdc", "snapshot": "false",
    "db": "NULL", "sequence": None, "cluster": "cass-cdc-pg", "file": "CommitLog-8-1.log", "pos": 1,
}  # fmt: skip


def cell(value: Any, deletion_ts: int | None = None) -> dict[str, Any]:
    return {"value": value, "deletion_ts": deletion_ts, "set": True}


def envelope(
    op: str,
    ts_us: int,
    keyspace: str,
    table: str,
    after: dict[str, Any],
    *,
    wrap: bool = False,
) -> bytes:
    payload = {
        "ts_ms": ts_us // 1000 + 500,
        "op": op,
        "source": {**SOURCE, "ts_ms": ts_us // 1000, "ts_us": ts_us, "ts_ns": ts_us * 1000,
                   "keyspace": keyspace, "table": table},
        "after": {**after, "_range_start": after.get("_range_start"),
                  "_range_end": after.get("_range_end")},
    }  # fmt: skip
    doc: Any = {"schema": {"type": "struct", "fields": []}, "payload": payload} if wrap else payload
    return orjson.dumps(doc)
