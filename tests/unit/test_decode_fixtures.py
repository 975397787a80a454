"""The decoder on the real messages captured from the Debezium Cassandra connector.

Fixtures: tests/fixtures/debezium/*.json, captured by tests/integration/
test_debezium_capture.py from debezium-connector-cassandra-5 against Cassandra 5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc_worker.coalesce import coalesce
from cdc_worker.decode import SNAPSHOT_TS, Change, DecodeError, Kind, UnknownColumns, decode
from cdc_worker.schema import TableSchema, schema_from_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"

USERS = {"id": "int", "bucket": "text", "seq": "int", "name": "text", "email": "text",
         "score": "int", "tags": "set<text>", "region": "text"}  # fmt: skip
ALLTYPES = {
    "k": "uuid", "ck": "timeuuid", "t": "text", "a": "ascii", "vc": "varchar", "ti": "tinyint",
    "si": "smallint", "i": "int", "bi": "bigint", "vi": "varint", "de": "decimal", "f": "float",
    "d": "double", "b": "boolean", "ts": "timestamp", "dt": "date", "tm": "time",
    "du": "duration", "ip": "inet", "bl": "blob", "l": "list<int>", "st": "set<text>",
    "m": "map<text, int>", "tu": "tuple<int, text>", "u": "frozen<addr>",
    "fl": "frozen<list<int>>",
}  # fmt: skip


def schema_for(table: str, keyspace: str) -> TableSchema:
    if table == "users":
        return schema_from_spec(keyspace, table, ["id", "bucket"], ["seq"], USERS,
                                static=frozenset({"region"}))  # fmt: skip
    if table == "alltypes":
        return schema_from_spec(keyspace, table, ["k"], ["ck"], ALLTYPES)
    if table == "rev":
        return schema_from_spec(keyspace, table, ["k"], ["c1", "c2"],
                                {"k": "int", "c1": "int", "c2": "text", "v": "text"},
                                descending=frozenset({"c1"}))  # fmt: skip
    if table == "evolve":
        return schema_from_spec(keyspace, table, ["id"], [], {"id": "int", "v": "text"})
    return schema_from_spec(keyspace, table, ["id"], [], {"id": "int", "v": "text"})


def load(name: str) -> tuple[TableSchema, bytes, dict[str, Any]]:
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    value = doc["value"]
    payload = value.get("payload", value)
    src = payload["source"]
    return schema_for(src["table"], src["keyspace"]), orjson.dumps(value), payload


ALL = sorted(p.stem for p in FIXTURES.glob("*.json")
             if json.loads(p.read_text()).get("value"))  # fmt: skip


def test_fixtures_exist() -> None:
    assert len(ALL) >= 30


@pytest.mark.parametrize("name", ALL)
def test_every_captured_message_decodes_or_is_explained(name: str) -> None:
    schema, raw, payload = load(name)
    if name == "evolve_after_add_column":
        with pytest.raises(UnknownColumns) as err:
            decode(schema, raw)
        assert set(err.value.columns) == {"extra"}
        return
    ch = decode(schema, raw)
    assert isinstance(ch, Change)
    if payload["source"]["snapshot"] == "true":
        assert ch.ts == SNAPSHOT_TS  # the read's time is no write time
        assert ch.snapshot
    else:
        assert ch.ts == payload["source"]["ts_us"]
    expected = {
        "i": {Kind.WRITE}, "u": {Kind.WRITE}, "r": {Kind.RANGE_DELETE},
        "d": {Kind.ROW_DELETE, Kind.PARTITION_DELETE},
    }[payload["op"]]  # fmt: skip
    assert ch.kind in expected


def test_insert_partial_update_ttl_and_deletes() -> None:
    s, raw, _ = load("insert")
    ins = decode(s, raw)
    assert ins.kind is Kind.WRITE
    assert ins.row_marker
    assert ins.cells["tags"][0] is not None
    s, raw, _ = load("partial_update")
    upd = decode(s, raw)
    assert set(upd.cells) == {"score"}
    assert not upd.row_marker
    s, raw, p = load("update_with_ttl")
    ttl = decode(s, raw)
    assert ttl.cells["email"][1] == p["after"]["email"]["deletion_ts"]
    s, raw, _ = load("column_delete")
    assert decode(s, raw).cells == {"email": (None, None)}
    s, raw, _ = load("row_delete")
    assert decode(s, raw).kind is Kind.ROW_DELETE
    s, raw, _ = load("partition_delete")
    pd = decode(s, raw)
    assert pd.kind is Kind.PARTITION_DELETE
    assert pd.key[2] is None


def test_range_deletes_keep_bounds_in_clustering_order() -> None:
    s, raw, _ = load("range_delete")
    rd = decode(s, raw)
    assert (rd.range_start, rd.range_end) == ((("2",), True), (("4",), False))
    s, raw, _ = load("rev_range_delete_c1")
    rev = decode(s, raw)
    assert (rev.range_start, rev.range_end) == ((("3",), True), None)


def test_all_types_convert() -> None:
    s, raw, _ = load("alltypes_insert")
    cells = {k: v[0] for k, v in decode(s, raw).cells.items()}
    assert cells["de"] == "12345678901234567890.123456789"
    assert cells["vi"] == "123456789012345678901234567890"
    assert cells["ip"] == "192.168.0.1"
    assert cells["bl"] == "\\xcafebabe"
    assert cells["tu"] == '[7,"seven"]'
    assert cells["u"] == '{"street":"Main","zip":12345}'
    assert cells["fl"] == '{"9","8"}'


def test_wrapped_and_schemaless_forms_agree() -> None:
    s, raw, payload = load("insert")
    assert decode(s, raw) == decode(s, orjson.dumps(payload))
    doc = json.loads((FIXTURES / "schemaless_insert.json").read_text())
    src = doc["value"]["source"]
    ch = decode(schema_for(src["table"], src["keyspace"]), orjson.dumps(doc["value"]))
    assert ch.kind is Kind.WRITE


def test_replica_duplicates_coalesce_to_one_row() -> None:
    s, raw, _ = load("insert")
    out = coalesce(s, [decode(s, raw) for _ in range(3)])
    assert len(out.rows) == 1
    assert out.events == 3


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "malformed JSON"),
        (None, "tombstone"),
        (b'{"op": "x", "source": {}, "after": {}}', "unknown op"),
        (b'{"op": "i", "source": {"keyspace": "ks", "table": "t"}, "after": {}}', "ts_us"),
    ],
)
def test_bad_input_raises_decode_error_with_reason(raw: bytes | None, why: str) -> None:
    s = schema_for("evolve", "ks")
    with pytest.raises(DecodeError, match=why):
        decode(s, raw)


def test_snapshot_rows_yield_to_streamed_writes_and_assume_no_row_marker() -> None:
    """docs/worker.md, "Snapshot rows": the cases of issue #13 item 7, through coalesce."""
    schema, raw, payload = load("snapshot_read")
    snap = decode(schema, raw)
    key = snap.key
    assert snap.cells
    assert not snap.row_marker
    # A streamed write whose client timestamp lags the snapshot's clock still wins.
    lagging = Change(Kind.WRITE, payload["source"]["ts_us"] - 5_000_000, key,
                     {"v": ("streamed", None)}, False, None)  # fmt: skip
    for order in ([snap, lagging], [lagging, snap]):
        row = coalesce(schema, order).rows[key]
        assert row.cells["v"][1] == "streamed"
    # A row created by UPDATE (no marker), snapshotted, then its only cell deleted: gone, as
    # in Cassandra (no live cell, no marker).
    cleared = Change(Kind.WRITE, 10, key, {"v": (None, None)}, False, None)
    row = coalesce(schema, [snap, cleared]).rows[key]
    assert row.marker_ts is None
    assert all(c[1] is None for c in row.cells.values())
