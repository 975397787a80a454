"""Cassandra's merge rules in the in-memory coalescer (no database)."""

from __future__ import annotations

import itertools

from cdc_worker.coalesce import RowState, cell_wins, coalesce
from cdc_worker.decode import Change, Kind
from cdc_worker.ranges import covers
from cdc_worker.schema import schema_from_spec

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


def test_tombstone_shadows_older_and_equal_writes_but_not_newer() -> None:
    row = RowState()
    row.write(w(5, "1", {"a": "5"}))
    row.delete(5)
    row.write(w(4, "1", {"b": "late"}))
    row.write(w(6, "1", {"b": "new"}))
    assert row.del_ts == 5
    assert {k: v[1] for k, v in row.cells.items()} == {"b": "new"}


def test_equal_timestamp_deletion_wins() -> None:
    assert cell_wins((5, None, None), (5, "x", None))
    assert not cell_wins((5, "x", None), (5, None, None))
    assert cell_wins((5, "y", None), (5, "x", None))


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
