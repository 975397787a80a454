"""reread.py's pure parts: which columns, key values as the driver binds them, stripping the
streamed deltas, and the changes a read becomes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cdc_worker.decode import Change, Kind
from cdc_worker.reread import Rereader, UnsupportedReread, check_keys, key_value, reread_columns
from cdc_worker.schema import schema_from_spec
from cdc_worker.typemap import parse_cql_type

SCHEMA = schema_from_spec(
    "ks", "t", ["p"], ["c"],
    {"p": "int", "c": "timestamp", "v": "int", "s": "set<text>", "f": "frozen<set<text>>",
     "m": "map<text, int>", "st": "list<int>"},
    static=frozenset({"st"}),
)  # fmt: skip


def test_only_regular_non_frozen_collections_are_reread() -> None:
    assert [c.name for c in reread_columns(SCHEMA)] == ["s", "m"]


@pytest.mark.parametrize(
    ("cql", "text", "want"),
    [
        ("int", "-5", -5),
        ("text", "é'x", "é'x"),
        ("uuid", "5f0c4d1e-8a36-4b8e-9d57-3d1c8f6b2a10",
         uuid.UUID("5f0c4d1e-8a36-4b8e-9d57-3d1c8f6b2a10")),
        ("timestamp", "1969-12-31T23:59:59.999000+00:00",
         datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("decimal", "-1.50", Decimal("-1.50")),
        ("blob", "\\x00ff", b"\x00\xff"),
        ("boolean", "false", False),
        ("inet", "::1", "::1"),
    ],
)  # fmt: skip
def test_key_values_from_their_postgres_text(cql: str, text: str, want: object) -> None:
    assert key_value(parse_cql_type(cql), text) == want


def test_keys_of_collection_type_are_refused() -> None:
    bad = schema_from_spec("ks", "t", ["p"], [], {"p": "frozen<list<int>>", "s": "set<int>"})
    with pytest.raises(UnsupportedReread, match="p frozen<list<int>>"):
        check_keys(bad)


class _Session:
    def prepare(self, cql: str) -> object:
        self.cql = cql
        return type("Stmt", (), {})()


def test_streamed_deltas_are_dropped_and_reads_become_changes() -> None:
    session = _Session()
    rr = Rereader(session, SCHEMA, "ONE")
    assert 'collection_max(WRITETIME("s"))' in session.cql
    assert session.cql.endswith('WHERE "p" = ? AND "c" = ?')
    k1, k2 = ("1", "2020-01-01T00:00:00+00:00"), ("2", "2020-01-01T00:00:00+00:00")
    w = Change(Kind.WRITE, 5, k1, {"v": ("1", None), "s": ("{a}", None)}, False, None)
    d = Change(Kind.ROW_DELETE, 6, k2, {}, False, None)
    assert rr.strip([w, d, w]) == [k1]
    assert w.cells == {"v": ("1", None)}
    # (s, writetime(s), m, writetime(m)) in the statement's order
    got = rr._changes(k1, (["b", "a"], 40, None, None), read_us=99)
    assert {(c.ts, tuple(sorted(c.cells.items()))) for c in got} == {
        (40, (("s", ('{"b","a"}', None)),)),
        (99, (("m", (None, None)),)),
    }
    gone = rr._changes(k2, None, read_us=99)
    assert [(c.ts, c.cells) for c in gone] == [(99, {"m": (None, None), "s": (None, None)})]
