"""The typed reading of `after` (a msgspec struct per table schema) equals the reference path.

`Decoder` reads a distinct change's `after` into a struct with one field per column; the
reference path (`decode`) walks a dict. Whatever `after` holds (cells of any JSON kind,
cells that are not objects, missing or extra columns, duplicate keys, range bounds), both
give the same change or the same error. Both parse JSON with msgspec, so an integer beyond
64 bits (a `varint` sent as a number) stays exact on both.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_worker.decode import DecodeError, Decoder, UnknownColumns, decode
from cdc_worker.schema import schema_from_spec
from tests.support.events import SOURCE, cell, envelope

S = schema_from_spec(
    "ks", "t", ["p"], ["c"],
    {"p": "int", "c": "text", "v": "varint", "d": "double", "b": "boolean", "s": "text",
     "my col": "bigint"},
)  # fmt: skip
COLS = ["p", "c", "v", "d", "b", "s", "my col", "extra"]

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5) | st.integers(min_value=2**64, max_value=2**130)
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
cells = (
    st.none()
    | st.builds(cell, json_values, st.none() | st.integers(0, 2**62) | json_scalars)
    | json_values
)
afters = st.dictionaries(st.sampled_from(COLS), cells, max_size=len(COLS))


def _envelope(op: str, after: dict[str, Any], snapshot: bool) -> bytes:
    """As `envelope`, encoded by msgspec: orjson cannot write integers beyond 64 bits."""
    source = {**SOURCE, "ts_us": 7, "keyspace": "ks", "table": "t",
              "snapshot": "true" if snapshot else "false"}  # fmt: skip
    return msgspec.json.encode({"op": op, "source": source, "after": after})


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except (DecodeError, UnknownColumns) as e:
        return type(e), str(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["i", "u", "d", "r"]), afters, st.booleans())
def test_any_after_gives_the_reference_outcome(op: str, after: dict[str, Any], snap: bool) -> None:
    raw = _envelope(op, after, snap)
    assert _outcome(lambda: Decoder(S).decode(raw)[0]) == _outcome(lambda: decode(S, raw))


def test_duplicate_keys_in_after_take_the_last_as_the_reference() -> None:
    raw = (
        b'{"op":"i","source":{"ts_us":7,"keyspace":"ks","table":"t"},"after":{"p":{"value":1},'
        b'"c":{"value":"x"},"s":{"value":"first"},"s":{"value":"last"}}}'
    )
    assert Decoder(S).decode(raw)[0] == decode(S, raw)
    assert decode(S, raw).cells["s"] == ("last", None)


def test_integers_beyond_64_bits_stay_exact() -> None:
    big = 123456789012345678901234567890
    raw = _envelope("i", {"p": cell(1), "c": cell("x"), "v": cell(-big)}, False)
    for ch in (Decoder(S).decode(raw)[0], decode(S, raw)):
        assert ch.cells["v"] == (str(-big), None)


def test_range_deletes_and_partition_deletes_take_the_same_path() -> None:
    bound = {"method": "INCL_START_BOUND", "values": [{"name": "c", "value": "a", "type": "x"}]}
    end = {"method": "EXCL_END_BOUND", "values": [{"name": "c", "value": "m", "type": "x"}]}
    for op, after in (
        ("r", {"p": cell(1), "_range_start": bound, "_range_end": end}),
        ("d", {"p": cell(1), "c": None}),
        ("d", {"p": cell(1), "c": cell("z")}),
    ):
        raw = envelope(op, 7, "ks", "t", after)
        assert Decoder(S).decode(raw)[0] == decode(S, raw)
