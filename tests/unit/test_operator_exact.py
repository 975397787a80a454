"""The `Exact` condition from the source verdict, with and without `reread`."""

from __future__ import annotations

from typing import Any

from cdc_operator.appliers.cassandra import SourceTable
from cdc_operator.builders.source_check import judge
from cdc_operator.reconcile import _exact

COLUMNS = {"p": "int", "s": "set<text>", "m": "map<text, int>", "f": "frozen<list<int>>"}
KINDS = {"p": "partition_key", "s": "regular", "m": "regular", "f": "regular"}


def exact(columns: dict[str, str], kinds: dict[str, str], reread: bool) -> dict[str, Any]:
    source = SourceTable(schema={}, inexact=judge(columns, kinds).inexact)
    conds = _exact([], source, 1, reread)
    return next(c for c in conds if c["type"] == "Exact")  # type: ignore[no-any-return]


def test_non_frozen_collections_are_inexact_unless_reread() -> None:
    without = exact(COLUMNS, KINDS, reread=False)
    assert (without["status"], without["reason"]) == ("False", "NonFrozenCollection")
    assert "m, s" in without["message"]
    with_ = exact(COLUMNS, KINDS, reread=True)
    assert (with_["status"], with_["reason"]) == ("True", "Reread")
    assert "m, s" in with_["message"]


def test_reread_does_not_make_static_columns_exact() -> None:
    cols = {**COLUMNS, "st": "set<int>", "sv": "int"}
    kinds = {**KINDS, "st": "static", "sv": "static"}
    c = exact(cols, kinds, reread=True)
    assert (c["status"], c["reason"]) == ("False", "NonFrozenCollection")
    assert "NonFrozenCollection: st" in c["message"]
    assert "StaticColumn: st, sv" in c["message"]
    assert " s," not in c["message"]


def test_an_exact_table_stays_exact() -> None:
    c = exact({"p": "int", "v": "int"}, {"p": "partition_key", "v": "regular"}, reread=True)
    assert (c["status"], c["reason"]) == ("True", "AllColumnsExact")
