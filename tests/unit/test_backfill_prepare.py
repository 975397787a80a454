"""Backfill's direct row states equal what coalescing the rows' changes gives.

`prepare_rows` builds each Cassandra row's state without making `Change`s and coalescing them
(the per-row Python cost of a backfill); it must come out exactly as `coalesce` of
`row_changes`, the path repair uses: cells with their own write times
and expiries, null and missing cells left out, a row without a live cell kept by a marker at
the read time, and a key seen twice merged by Cassandra's rules.
"""

from __future__ import annotations

import random

from cdc_worker.coalesce import coalesce
from cdc_worker.scan import repair as R
from cdc_worker.scan.reader import ScanRow
from cdc_worker.schema import schema_from_spec
from cdc_worker.target import DeleteMode, Target
from cdc_worker.write import TableWriter

COLS = {"p": "int", "c": "text", "a": "int", "b": "text", "d": "double", "s": "set<text>",
        "m": "map<text, int>", "f": "frozen<list<int>>"}  # fmt: skip


def _rows(rng: random.Random, n: int) -> list[ScanRow]:
    out = []
    for i in range(n):
        cells = {}
        makers = {
            "a": lambda: rng.randint(-5, 5), "b": lambda: f"b{rng.random()}", "d": rng.random,
            "s": lambda: {"x", f"y{rng.randint(0, 3)}"}, "m": lambda: {"k": rng.randint(0, 9)},
            "f": lambda: [1, 2],
        }  # fmt: skip
        for name, make in makers.items():
            roll = rng.random()
            if roll < 0.2:
                continue  # not selected
            value = None if roll < 0.35 else make()
            wt = rng.choice([1000, 2000, 3000, None])
            exp = rng.choice([None, None, 9_000_000])
            cells[name] = (value, wt, exp)
        key = (i // 3, f"c{i % 3}")
        out.append(ScanRow(rng.randint(-(2**63) + 1, 2**63 - 1), key, cells, 5000 + i))
    return out


def test_direct_states_equal_coalesced_changes() -> None:
    schema = schema_from_spec("ks", "t", ["p"], ["c"], COLS)
    target = Target(schema, "s", "t", DeleteMode.HARD)
    writer = TableWriter(target, {c.target: i + 3 for i, c in enumerate(target.value_columns)})
    conv = R.RowConverter(schema)
    rng = random.Random(5)
    for _ in range(50):
        rows = _rows(rng, 40)
        rows += rows[: rng.randint(0, 3)]  # a key met twice goes through Coalesced.add
        got = R.prepare_rows(conv, writer, rows)
        changes = [ch for r in rows for ch in R.row_changes(schema, r, R.row_key(schema, r))]
        want = coalesce(schema, changes)
        assert got.batch.rows == want.rows
        tokens = {R.row_key(schema, r)[:1]: r.token for r in rows}
        assert got.tokens == tokens
        assert got.rendered == writer.render(want, tokens)
        assert [ln.rsplit("\t", 1)[1] for ln in got.rendered.splitlines()] == [
            str(tokens[k[:1]]) for k in want.rows
        ]
