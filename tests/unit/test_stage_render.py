"""The COPY text of staged rows, against lines written out by hand.

`TableWriter.render` is the stream's and backfill's hot path and is written for speed
(escaping inlined, a write time turned into text once per distinct value); these lines are
what PostgreSQL's COPY text format must receive: tab-separated fields, `\\N` for NULL,
backslash, tab, newline and carriage return escaped, the write-time and expiry arrays in
value-column order with NULL where a cell is absent, then marker, marker expiry, deletion
time and, for backfill, the partition token.
"""

from __future__ import annotations

from cdc_worker.coalesce import Coalesced, RowState
from cdc_worker.schema import schema_from_spec
from cdc_worker.target import DeleteMode, Target
from cdc_worker.write import TableWriter

SCHEMA = schema_from_spec("ks", "t", ["p"], ["c"], {"p": "int", "c": "text", "a": "text",
                                                     "b": "int", "d": "text"})  # fmt: skip


def _writer() -> TableWriter:
    target = Target(SCHEMA, "s", "t", DeleteMode.HARD)
    return TableWriter(target, {c.target: i + 3 for i, c in enumerate(target.value_columns)})


def _batch() -> Coalesced:
    b = Coalesced()
    b.rows[("1", "x\ty")] = RowState({"a": (10, "tab\there\\back\nnl\rcr", None),
                                      "b": (10, "7", 99), "d": (12, None, None)})  # fmt: skip
    b.rows[("2", "plain")] = RowState(marker_ts=5, marker_exp=50)
    b.rows[("3", "z")] = RowState({"d": (-3, "é ok", None)}, del_ts=1)
    return b


def test_lines_are_copy_text_field_by_field() -> None:
    w = _writer()
    order = [c.source for c in w.vals]
    assert order == ["a", "b", "d"]
    want = [
        ["1", "x\\ty", "tab\\there\\\\back\\nnl\\rcr", "7", "\\N",
         "{10,10,12}", "{NULL,99,NULL}", "\\N", "\\N", "\\N"],
        ["2", "plain", "\\N", "\\N", "\\N", "{NULL,NULL,NULL}", "{NULL,NULL,NULL}",
         "5", "50", "\\N"],
        ["3", "z", "\\N", "\\N", "é ok", "{NULL,NULL,-3}", "{NULL,NULL,NULL}", "\\N", "\\N", "1"],
    ]  # fmt: skip
    assert w.render(_batch()) == "".join("\t".join(f) + "\n" for f in want)
    tokens = {("1",): -9, ("2",): 0, ("3",): 2**62}
    with_tokens = [[*f, str(tokens[(f[0],)])] for f in want]
    assert w.render(_batch(), tokens) == "".join("\t".join(f) + "\n" for f in with_tokens)
