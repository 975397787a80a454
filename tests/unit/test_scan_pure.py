"""The scanner's pure parts: token ranges, slices, the digest, and the drill-down."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import pytest

from cdc_worker.scan.compare import Comparer
from cdc_worker.scan.digest import Digest, row_hash
from cdc_worker.scan.pgside import PgRow
from cdc_worker.scan.reader import ScanRow, ValueRows
from cdc_worker.scan.ring import (
    MAX_TOKEN,
    MIN_TOKEN,
    TokenRange,
    ownership_ranges,
    parse_slice,
    plan,
    slice_of,
    split,
)
from cdc_worker.scan.values import canon, jsonb_text
from cdc_worker.schema import schema_from_spec
from cdc_worker.target import DeleteMode, Target
from cdc_worker.typemap import parse_cql_type


def _covers_ring(ranges: list[TokenRange]) -> None:
    assert ranges[0].start == MIN_TOKEN
    assert ranges[-1].end == MAX_TOKEN
    for a, b in pairwise(ranges):
        assert a.end == b.start  # contiguous, no overlap (start exclusive, end inclusive)


def test_ownership_ranges_cover_the_ring_once() -> None:
    rng = random.Random(1)
    tokens = [rng.randint(MIN_TOKEN + 1, MAX_TOKEN - 1) for _ in range(48)]
    owned = ownership_ranges(tokens)
    _covers_ring(owned)
    assert {r.end for r in owned} >= set(tokens)  # every node token ends a range
    assert ownership_ranges([]) == [TokenRange(MIN_TOKEN, MAX_TOKEN)]


def test_split_and_plan_are_exact() -> None:
    r = TokenRange(-10, 10)
    parts = split(r, 3)
    assert [(p.start, p.end) for p in parts] == [(-10, -4), (-4, 3), (3, 10)]
    assert split(TokenRange(0, 2), 10) == [TokenRange(0, 1), TokenRange(1, 2)]
    tokens = [random.Random(2).randint(MIN_TOKEN, MAX_TOKEN) for _ in range(16)]
    ranges = plan(tokens, 256)
    _covers_ring(ranges)
    assert 240 <= len(ranges) <= 280


@pytest.mark.parametrize("n", [1, 2, 3, 7, 300])
def test_slices_are_disjoint_and_complete(n: int) -> None:
    ranges = plan([0, 2**40, -(2**50)], 100)
    got = [r for i in range(n) for r in slice_of(ranges, i, n)]
    assert got == ranges


def test_parse_slice() -> None:
    assert parse_slice("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "x", "1/0"):
        with pytest.raises(ValueError, match="slice"):
            parse_slice(bad)


def test_halves_and_contains() -> None:
    r = TokenRange(0, 10)
    h = r.halves()
    assert h == (TokenRange(0, 5), TokenRange(5, 10))
    assert TokenRange(4, 5).halves() is None
    assert not r.contains(0)
    assert r.contains(10)


def test_digest_is_order_independent_and_counts_duplicates() -> None:
    hs = [row_hash(f"row{i}") for i in range(100)]
    assert Digest.of(hs) == Digest.of(reversed(hs))
    assert Digest.of([*hs, hs[0]]) != Digest.of(hs)
    assert Digest.of([hs[0], hs[0]]) != Digest.of([])  # XOR would cancel these


def test_canonical_forms() -> None:
    from datetime import datetime
    from decimal import Decimal

    t = parse_cql_type
    assert canon(t("timestamp"), datetime(1970, 1, 1, 0, 0, 1, 500000)) == "1500000"
    assert canon(t("double"), 1.0) == "3ff0000000000000"
    assert canon(t("decimal"), Decimal("1.50")) == "1.50"
    assert canon(t("blob"), b"\x01\xff") == "01ff"
    assert canon(t("set<int>"), [1, 22]) == "1:12:22"
    assert canon(t("list<text>"), []) is None
    # jsonb's own output: keys by length then bytes, ", " and ": ", numbers as numeric
    assert jsonb_text({"bb": 1, "a": [1.5, "x\n"], "c": None}) == (
        '{"a": [1.5, "x\\n"], "c": null, "bb": 1}'
    )
    assert jsonb_text(1e20) == "100000000000000000000"


class FakePg:
    """The PostgreSQL side of a drill-down over an in-memory table (digest queries counted)."""

    def __init__(self, rows: list[PgRow]) -> None:
        self.rows_ = rows
        self.queries = 0

    def digest(self, conn: Any, r: TokenRange, now_us: int) -> Digest:
        self.queries += 1
        return Digest.of(p.hash for p in self.rows_ if r.contains(p.token))

    def rows(self, conn: Any, r: TokenRange, now_us: int, lag_us: int) -> list[PgRow]:
        return [p for p in self.rows_ if r.contains(p.token)]


def test_drill_down_finds_exactly_the_differing_rows_with_few_queries() -> None:
    schema = schema_from_spec("ks", "t", ["id"], [], {"id": "bigint", "v": "text"})
    target = Target(schema, "s", "t", DeleteMode.HARD)
    rng = random.Random(3)
    scan_rows = [
        ScanRow(rng.randint(MIN_TOKEN + 1, MAX_TOKEN), (i,), {"v": (f"v{i}", 1, None)}, 0)
        for i in range(5000)
    ]
    cmp = Comparer(target, None, leaf_rows=8)  # type: ignore[arg-type]
    crows = [cmp.canon_row(r, 0) for r in scan_rows]
    pg_rows = [
        PgRow(c.row.token, c.key_text, (c.key_text,), c.fields, (1,), 1, c.hash)
        for c in crows
        if c is not None
    ]
    changed, missing = pg_rows[10], pg_rows[20]
    pg_rows[10] = PgRow(changed.token, changed.key_text, changed.key_pg, ("4:hand",), (1,), 1,
                        row_hash(changed.key_text + "4:hand"))  # fmt: skip
    del pg_rows[20]
    extra = PgRow(123, "2:-1", ("-1",), ("1:x",), (1,), 1, row_hash("2:-11:x"))
    pg_rows.append(extra)
    fake = FakePg(pg_rows)
    cmp.pg = fake  # type: ignore[assignment]
    diffs = cmp.compare(None, TokenRange(MIN_TOKEN, MAX_TOKEN), scan_rows, 0)  # type: ignore[arg-type]
    got = {(d.key_text, d.cass is None, d.pg is None, tuple(d.columns)) for d in diffs}
    assert got == {
        (changed.key_text, False, False, ("v",)),
        (missing.key_text, False, True, ()),
        ("2:-1", True, False, ()),
    }
    assert fake.queries < 3 * 2 * 64  # ~ 2 per level per difference, not one per row
    # In sync: one digest query settles the whole range.
    fake2 = FakePg([p for p in pg_rows if p is not extra])
    fake2.rows_[10] = changed
    fake2.rows_.append(missing)
    cmp.pg = fake2  # type: ignore[assignment]
    assert cmp.compare(None, TokenRange(MIN_TOKEN, MAX_TOKEN), scan_rows, 0) == []  # type: ignore[arg-type]
    assert fake2.queries == 1


def test_values_only_rows_digest_like_cell_rows() -> None:
    """A verify digests the driver's values-only tuples directly; the result must be the row
    digest of the same values as cells (what PostgreSQL's side is checked against)."""
    cols = {"a": "int", "b": "bigint", "t": "text", "d": "double", "f": "boolean", "s": "set<int>"}
    schema = schema_from_spec("ks", "t", ["a"], ["b"], cols)
    target = Target(schema, "s", "t", DeleteMode.HARD)
    cmp = Comparer(target, None)  # type: ignore[arg-type]
    rng = random.Random(5)
    names = ["t", "d", "f", "s"]  # the reader's order, not the table's
    tuples = []
    for i in range(300):
        vals = [rng.choice([None, f"x{i} é"]), rng.choice([None, i / 7]),
                rng.choice([None, True, False]), rng.choice([None, [1, i]])]  # fmt: skip
        tuples.append((rng.randint(MIN_TOKEN + 1, MAX_TOKEN), i, -i, *vals))
    got = cmp.canon_values(ValueRows(77, tuples), names)
    want = [
        cmp.canon_row(ScanRow(t[0], t[1:3], {n: (v, None, None) for n, v in
                                              zip(names, t[3:], strict=True)}, 77), 77)
        for t in tuples
    ]  # fmt: skip
    assert len(got) == len(want) == 300  # every column replicated: a row of nulls is a row
    for g, w in zip(got, want, strict=True):
        assert w is not None
        assert (g.key_text, g.fields, g.hash, g.newest) == (w.key_text, w.fields, w.hash, 0)
        assert (g.row.token, g.row.key, g.row.read_us) == (w.row.token, w.row.key, 77)
    # A column the reader does not read (as for a counter) is null on both paths.
    partial = cmp.canon_values(ValueRows(1, [t[:-1] for t in tuples]), names[:-1])
    at = [v.source for v in cmp.vals].index("s")
    assert [c.fields[at] for c in partial] == [None] * 300
