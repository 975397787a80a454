"""Whatever an event holds, decoding fails only with `DecodeError`, so it is dead-lettered."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_worker.decode import DecodeError, decode
from cdc_worker.schema import schema_from_spec
from cdc_worker.target import DeleteMode, Target, safe_name
from tests.support.events import cell, envelope

S = schema_from_spec("ks", "t", ["p"], ["c"], {"p": "int", "c": "int", "v": "blob"})
INT32 = "org.apache.cassandra.db.marshal.Int32Type"


def bound(method: str, value: Any) -> dict[str, Any]:
    return {"method": method, "values": [{"name": "c", "value": value, "type": INT32}]}


@pytest.mark.parametrize(
    "after",
    [
        {"_range_start": bound("INCL_START_BOUND", "not-a-number"),
         "_range_end": bound("EXCL_END_BOUND", "9")},
        {"_range_start": bound("INCL_START_BOUND", "1"), "_range_end": bound("EXCL_END_BOUND", [])},
        {"_range_start": {"method": "INCL_START_BOUND", "values": ["c"]},
         "_range_end": bound("EXCL_END_BOUND", "9")},
    ],
)  # fmt: skip
def test_malformed_range_bounds_raise_decode_error(after: dict[str, Any]) -> None:
    raw = envelope("r", 1, "ks", "t", {"p": cell(1), "c": None, "v": None, **after})
    with pytest.raises(DecodeError):
        decode(S, raw)


def test_any_unexpected_failure_becomes_decode_error() -> None:
    raw = envelope("u", 1, "ks", "t", {"p": cell(1), "c": cell(2), "v": cell("@@not base64")})
    with pytest.raises(DecodeError):
        decode(S, raw)
    with pytest.raises(DecodeError):
        decode(S, b'{"op": "u", "source": {"ts_us": 1, "keyspace": "ks", "table": "t"}, '
                  b'"after": {"p": {"value": 1}, "c": 7}}')  # fmt: skip


def test_source_names_in_the_workers_namespace_get_a_safe_target_name() -> None:
    assert [safe_name(n) for n in ["_cdc_ts", "__cdc_x", "_cdc", "cdc", "_cd", "x_cdc", "ts"]] == [
        "__cdc_ts", "___cdc_x", "__cdc", "cdc", "_cd", "x_cdc", "ts",
    ]  # fmt: skip
    schema = schema_from_spec("ks", "t", ["_cdc_p"], [], {"_cdc_p": "int", "_cdc_ts": "int"})
    target = Target(schema, "s", "t", DeleteMode.HARD, rename=(("_cdc_ts", "_cdc_exp"),))
    assert [c.target for c in target.key_columns] == ["__cdc_p"]
    assert [c.target for c in target.value_columns] == ["__cdc_exp"]
