"""The insert-only path for staged rows PostgreSQL has never seen (the scanner's backfill).

A backfill into an empty table stages rows whose keys are in neither the table nor its
`_cdc_dead_*` table and that no tombstone shadows. For such a row the merge (write.py) has
nothing to compare: every cell of the staged row wins, and its result is a function of the
staged row alone. This module computes that result directly, in one `INSERT ... SELECT` with
two anti-joins. When it inserted every staged row (a backfill of new rows) the merge is not
run at all. Otherwise the merge runs on the whole staging table, the rows just inserted
included: for them the stored row is the merge's own result of the same staged row, and the
merge is idempotent (the stream relies on that for every replayed event), so they are left
as they are. Removing them from the staging table instead cost 14 % of the statement
(measured with auto_explain on a backfill), for a case a backfill rarely meets.

The expressions are the merge's own with the stored side absent: `_cdcdel` is NULL (the
staged `_cdc_del_ts` is NULL, which the caller has already raised for partition and range
tombstones: write.py's `apply_ptomb` and `_stored_ranges`), so `COALESCE(_cdcdel, -1)` is -1;
`_cdcw` is "the staged cell has a write time". A row none of whose cells or marker is live
(everything expired at `now`) is left to the merge, which moves it to the dead table or marks
it deleted. tests/integration/test_write_new.py holds the two paths equal on random rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdc_worker.target import META_COLUMNS, DeleteMode, qi

if TYPE_CHECKING:
    from cdc_worker.write import TableWriter


def insert_new_sql(w: TableWriter, token: bool) -> str:
    """Insert the staged rows that are new and alive and return how many (one row, one
    column)."""
    t, vals = w.t, w.vals
    K = [qi(c.target) for c in w.keys]
    tests = [
        f"COALESCE(s._cdc_ts[{i + 1}] > -1 AND s.{qi(c.target)} IS NOT NULL "
        f"AND (s._cdc_exp[{i + 1}] IS NULL OR s._cdc_exp[{i + 1}] > %(now)s), false)"
        for i, c in enumerate(vals)
    ]
    test_m = (
        "COALESCE(s._cdc_marker_ts > -1 AND "
        "(s._cdc_marker_exp IS NULL OR s._cdc_marker_exp > %(now)s), false)"
    )
    # Each liveness test is computed once per row, in a subquery that `OFFSET 0` keeps from
    # being flattened (inlined, each was evaluated three times: value, next expiry, filter);
    # `live` and `live_m` name its result columns.
    flags = ", ".join([*(f"{t} AS _cdcl{i}" for i, t in enumerate(tests)), f"{test_m} AS _cdclm"])
    inner = f"(SELECT s.*, {flags} FROM {w.stage} s WHERE s._cdc_del_ts IS NULL OFFSET 0)"
    live = [f"s._cdcl{i}" for i in range(len(tests))]
    live_m = "s._cdclm"
    alive = " OR ".join([*live, live_m])
    cols = [*K, *(qi(c.target) for c in vals)]
    sel = [f"s.{k}" for k in K]
    sel += [
        f"CASE WHEN {lv} THEN s.{qi(c.target)}::{c.pg_type} END"
        for lv, c in zip(live, vals, strict=True)
    ]
    # Staged arrays are indexed by position in `vals` (1-based), stored ones by attnum.
    sel += [
        w.by_attnum(lambda i: f"CASE WHEN s._cdc_ts[{i + 1}] > -1 THEN s._cdc_ts[{i + 1}] END"),
        w.by_attnum(lambda i: f"CASE WHEN s._cdc_ts[{i + 1}] > -1 THEN s._cdc_exp[{i + 1}] END"),
        "CASE WHEN s._cdc_marker_ts > -1 THEN s._cdc_marker_ts END",
        "CASE WHEN s._cdc_marker_ts > -1 THEN s._cdc_marker_exp END",
        "NULL::bigint",
    ]
    exps = [f"CASE WHEN {lv} THEN s._cdc_exp[{i + 1}] END" for i, lv in enumerate(live)]
    sel.append(
        "LEAST(" + ", ".join([*exps, f"CASE WHEN {live_m} THEN s._cdc_marker_exp END"]) + ")"
    )
    sel.append("now()")
    names = [*cols, *(n for n, _ in META_COLUMNS), "_cdc_next_exp", "_cdc_updated_at"]
    if token:
        names.append("_cdc_token")
        sel.append("s._cdc_token")
    jk = " AND ".join(f"m.{k} = s.{k}" for k in K)
    absent = f"NOT EXISTS (SELECT 1 FROM {t.fq} m WHERE {jk})"
    if t.delete_mode is DeleteMode.HARD:
        absent += f" AND NOT EXISTS (SELECT 1 FROM {t.dead} m WHERE {jk})"
    klist = ", ".join(K)
    return (
        f"WITH i AS (INSERT INTO {t.fq} ({', '.join(names)}) SELECT {', '.join(sel)} "
        f"FROM {inner} s WHERE ({alive}) AND {absent} "
        f"ON CONFLICT ({klist}) DO NOTHING RETURNING 1) SELECT count(*) FROM i"
    )
