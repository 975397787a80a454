"""The batch decoder (`Decoder`) recognises replica copies and otherwise equals `decode`.

Copies of one change differ in `source.file/pos` and the emission time `ts_ms`; anything
decoding depends on (op, write time, keyspace, table, snapshot, `after`) makes two events
different. Malformed input takes the reference path, so results and errors are the same.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_worker.decode import DecodeError, Decoder, UnknownColumns, decode
from tests.unit.test_decode_fixtures import ALL, load


def _copy(payload: dict[str, Any], node: int, wrap: dict[str, Any] | None = None) -> bytes:
    source = {**payload["source"], "file": f"CommitLog-{node}.log", "pos": 100 * node}
    doc = {**payload, "ts_ms": payload.get("ts_ms", 0) + node, "source": source}
    return orjson.dumps({**wrap, "payload": doc} if wrap is not None else doc)


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except (DecodeError, UnknownColumns) as e:
        return type(e), str(e)


@pytest.mark.parametrize("name", ALL)
def test_every_fixture_decodes_as_the_reference_and_its_copies_are_recognised(name: str) -> None:
    schema, raw, payload = load(name)
    dec = Decoder(schema)
    assert _outcome(lambda: dec.decode(raw)[0]) == _outcome(lambda: decode(schema, raw))
    if name == "evolve_after_add_column":
        return
    first, fresh = dec.decode(raw)
    wrapper = orjson.loads(raw)
    wrap = {"schema": wrapper["schema"]} if "schema" in wrapper else None
    for node in (1, 2):
        ch, fresh = dec.decode(_copy(payload, node, wrap))
        assert ch is first
        assert not fresh
    # The schemaless form of the same change is the same change.
    assert dec.decode(_copy(payload, 3))[0] is first


def test_what_decoding_depends_on_makes_events_different() -> None:
    schema, raw, payload = load("insert")
    dec = Decoder(schema)
    first, fresh = dec.decode(raw)
    assert fresh
    src = payload["source"]
    name = {"value": "x", "deletion_ts": None, "set": True}
    variants = [
        {**payload, "op": "u"},
        {**payload, "source": {**src, "ts_us": src["ts_us"] + 1}},
        {**payload, "source": {**src, "snapshot": "true"}},
        {**payload, "after": {**payload["after"], "name": name}},
    ]
    for v in variants:
        ch, fresh = dec.decode(orjson.dumps(v))
        assert fresh
        assert ch is not first
        assert ch == decode(schema, orjson.dumps(v))


def test_equal_but_differently_typed_fields_are_not_copies() -> None:
    # `True == 1` and `1.0 == 1` in Python: such events must be judged on their own.
    schema, _, payload = load("insert")
    src = payload["source"]
    dec = Decoder(schema)
    one = {**payload, "source": {**src, "ts_us": 1}}
    assert dec.decode(orjson.dumps(one))[0].ts == 1
    for bad in (True, 1.0, "1"):
        doc = orjson.dumps({**payload, "source": {**src, "ts_us": bad}})
        with pytest.raises(DecodeError, match="ts_us"):
            dec.decode(doc)


@given(st.binary(max_size=300) | st.sampled_from([
    b'{"op":"i","source":{"ts_us":1,"keyspace":"k","table":"t"},"after":{"x":"\\ud800"}}',
    b'{"op":"i","source":{"ts_us":1,"keyspace":"k","table":"t","file":"\xff"},"after":{}}',
    b'{"schema":{},"payload":null}', b'{"op":"i","source":[],"after":{}}', b"null", b"[]",
    b'{"op":"i","source":{"ts_us":1,"keyspace":"k","table":"t"},"after":[]}',
]))  # fmt: skip
def test_any_input_gives_the_reference_outcome(raw: bytes) -> None:
    schema, _, _ = load("insert")
    assert _outcome(lambda: Decoder(schema).decode(raw)[0]) == _outcome(lambda: decode(schema, raw))
