"""Cassandra's merge rules in the in-memory coalescer (no database)."""

from __future__ import annotations

import itertools
from datetime import date, time
from decimal import Decimal
from ipaddress import ip_address
from typing import Any
from uuid import UUID

import pytest

from cdc_worker.coalesce import RowState, cell_wins, coalesce, column_types
from cdc_worker.decode import Change, Kind
from cdc_worker.ranges import covers
from cdc_worker.schema import schema_from_spec
from cdc_worker.tiebreak import serialize
from cdc_worker.typemap import parse_cql_type, to_pg_text
from tests.support.cassandra_bytes import value_bytes

S = schema_from_spec("ks", "t", ["p"], ["c"], {"p": "int", "c": "int", "a": "int", "b": "text"})
DESC = schema_from_spec(
    "ks", "r", ["k"], ["c1", "c2"], {"k": "int", "c1": "int", "c2": "text", "v": "text"},
    descending=frozenset({"c1"}),
)  # fmt: skip


def w(ts: int, c: str, cells: dict[str, str | None], insert: bool = False) -> Change:
    return Change(Kind.WRITE, ts, ("1", c), {k: (v, None) for k, v in cells.items()}, insert, None)


def test_last_write_wins_per_column_in_any_order() -> None:
    changes = [w(1, "1", {"a": "1", "b": "x"}, True), w(3, "1", {"a": "3"}), w(2, "1", {"b": "y"})]
    for perm in itertools.permutations(changes):
        row = coalesce(S, list(perm)).rows[("1", "1")]
        assert {k: v[1] for k, v in row.cells.items()} == {"a": "3", "b": "y"}
        assert row.marker_ts == 1


TYPES = column_types(S)
INT, TEXT = parse_cql_type("int"), parse_cql_type("text")


def test_tombstone_shadows_older_and_equal_writes_but_not_newer() -> None:
    row = RowState()
    row.write(w(5, "1", {"a": "5"}), TYPES)
    row.delete(5)
    row.write(w(4, "1", {"b": "late"}), TYPES)
    row.write(w(6, "1", {"b": "new"}), TYPES)
    assert row.del_ts == 5
    assert {k: v[1] for k, v in row.cells.items()} == {"b": "new"}


def test_equal_timestamps_follow_cells_resolve_regular() -> None:
    # tombstone > expiring > live, whatever the values
    assert cell_wins((5, None, None), (5, "x", 99), TEXT)
    assert not cell_wins((5, "x", None), (5, None, None), TEXT)
    assert cell_wins((5, "a", 10), (5, "z", None), TEXT)
    assert not cell_wins((5, "z", None), (5, "a", 10), TEXT)
    # two expiring cells: the later expiry, before the value
    assert cell_wins((5, "a", 20), (5, "z", 10), TEXT)
    assert cell_wins((5, "z", 10), (5, "a", 10), TEXT)
    # then the serialized value, bytes compared unsigned: not text order, not numeric order
    assert cell_wins((5, "10", None), (5, "9", None), INT)
    assert cell_wins((5, "-1", None), (5, "1000", None), INT)
    assert cell_wins((5, "é", None), (5, "z", None), TEXT)
    assert not cell_wins((5, "x", None), (5, "x", None), TEXT)


def test_ties_do_not_depend_on_arrival_order() -> None:
    changes = [w(5, "1", {"a": "9"}), w(5, "1", {"a": "10"}), w(5, "1", {"a": "-1"}),
               w(5, "1", {"a": "1000"})]  # fmt: skip
    for perm in itertools.permutations(changes):
        assert coalesce(S, list(perm)).rows[("1", "1")].cells["a"][1] == "-1"


def test_an_expiring_row_marker_supersedes_a_live_one_at_the_same_time() -> None:
    live = Change(Kind.WRITE, 5, ("1", "1"), {}, True, None)
    expiring = Change(Kind.WRITE, 5, ("1", "1"), {}, True, 100)
    later = Change(Kind.WRITE, 5, ("1", "1"), {}, True, 200)
    for perm in itertools.permutations([live, expiring, later]):
        row = coalesce(S, list(perm)).rows[("1", "1")]
        assert (row.marker_ts, row.marker_exp) == (5, 200)


# The connector's JSON value, and the same value for the tests' own serializer
# (tests/support/cassandra_bytes.py), per CQL type: the worker must order them the same.
SAMPLES: dict[str, list[tuple[Any, Any]]] = {
    "tinyint": [(v, v) for v in (-128, -1, 0, 1, 127)],
    "smallint": [(v, v) for v in (-32768, -1, 0, 255, 32767)],
    "int": [(v, v) for v in (-(2**31), -1000, -1, 0, 9, 10, 1000, 2**31 - 1)],
    "bigint": [(v, v) for v in (-(2**63), -1, 0, 1, 2**63 - 1)],
    "varint": [(str(v), v) for v in (-(10**30), -129, -128, -1, 0, 1, 127, 128, 255, 10**30)],
    "decimal": [(v, Decimal(v)) for v in ("-1", "0", "1", "1.5", "1.50", "-0.001", "123.456")],
    "float": [(v, v) for v in (-1.5, -0.0, 0.0, 0.5, 3.0e38)],
    "double": [(v, v) for v in (-1e300, -0.0, 0.0, 1.5, 1e-300)],
    "boolean": [(False, False), (True, True)],
    "text": [(v, v) for v in ("", "a", "z", "Z", "é", "日本", "tab\t")],
    "uuid": [(v, UUID(v)) for v in ("00000000-0000-0000-0000-000000000001",
                                    "ffffffff-0000-0000-0000-000000000000",
                                    "7fffffff-0000-1000-8000-000000000000")],
    "timestamp": [(v, v) for v in (-(10**12), -1, 0, 999, 1_700_000_000_000)],
    "date": [(v, date.fromisoformat(v)) for v in ("1900-01-01", "1969-12-31", "1970-01-01",
                                                  "2024-02-29")],
    "time": [(n, time(n // 3_600_000_000_000, n // 60_000_000_000 % 60,
                      n // 1_000_000_000 % 60, n // 1000 % 1_000_000))
             for n in (0, 1000, 3_600_000_000_000, 86_399_999_999_000)],
    "duration": [({"months": m, "days": d, "nanos": n}, (m, d, n))
                 for m, d, n in ((0, 0, 0), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1000),
                                 (0, 0, -5_000), (14, -3, 10**15))],
    "inet": [(f"/{v}", ip_address(v)) for v in ("1.2.3.4", "255.0.0.1", "::1", "fe80::1")],
    "blob": [("", b""), ("AA==", b"\x00"), ("AP8=", b"\x00\xff"), ("AQ==", b"\x01"),
             ("/w==", b"\xff")],
    "list<int>": [([], []), ([1], [1]), ([-1], [-1]), ([1, 2], [1, 2]), ([2], [2])],
    "frozen<list<text>>": [(["a"], ["a"]), (["é", "b"], ["é", "b"]), ([], [])],
    "set<bigint>": [([-1, 5], [-1, 5]), ([0], [0])],
}  # fmt: skip


@pytest.mark.parametrize("cql", sorted(SAMPLES))
def test_tie_order_matches_cassandras_serialization(cql: str) -> None:
    t = parse_cql_type(cql)
    model = cql.removeprefix("frozen<").removesuffix(">") if cql.startswith("frozen") else cql
    for (ja, ma), (jb, mb) in itertools.product(SAMPLES[cql], repeat=2):
        worker = serialize(t, to_pg_text(t, ja)) > serialize(t, to_pg_text(t, jb))
        assert worker == (value_bytes(model, ma) > value_bytes(model, mb)), (cql, ja, jb)
    for j, m in SAMPLES[cql]:
        assert serialize(t, to_pg_text(t, j)) == value_bytes(model, m), (cql, j)


def test_partition_and_range_tombstones_apply_regardless_of_order() -> None:
    pdel = Change(Kind.PARTITION_DELETE, 10, ("1", None), {}, False, None)
    rdel = Change(
        Kind.RANGE_DELETE, 20, ("1", None), {}, False, None, (("2",), True), (("3",), False)
    )
    writes = [w(5, str(c), {"a": "x"}, True) for c in range(4)] + [w(15, "2", {"a": "y"})]
    for perm in itertools.permutations([pdel, rdel, *writes[:2], writes[4]]):
        rows = coalesce(S, list(perm)).rows
        assert rows[("1", "0")].del_ts == 10
        assert rows[("1", "0")].cells == {}
        assert rows[("1", "2")].del_ts == 20
        assert rows[("1", "2")].cells == {}


def test_range_bounds_respect_descending_clustering_order() -> None:
    cols = DESC.clustering
    # `c1 <= 3` on a DESC column arrives as start INCL [3], end unbounded.
    assert covers(cols, ["2", "a"], (("3",), True), None)
    assert covers(cols, ["3", "z"], (("3",), True), None)
    assert not covers(cols, ["4", "a"], (("3",), True), None)
    # `c1 = 5 AND c2 > 'a'`: start EXCL [5, a], end INCL [5].
    assert covers(cols, ["5", "b"], (("5", "a"), False), (("5",), True))
    assert not covers(cols, ["5", "a"], (("5", "a"), False), (("5",), True))
    assert not covers(cols, ["4", "b"], (("5", "a"), False), (("5",), True))
