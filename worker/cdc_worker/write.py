"""Write a coalesced batch into PostgreSQL: COPY into staging, then one set-based merge.

The merge applies the same rules as coalesce.py between the batch and what is
stored: per-column last-write-wins on the attnum-indexed `_cdc_ts` arrays, the
highest tombstone of row, partition (`_cdc_ptomb_*`) and range (`_cdc_rtomb_*`)
shadows older cells, and expiry is judged against one `now` for the batch.
Rows that end up dead move to `_cdc_dead_*` (hard mode) or get
`_cdc_deleted_at` (soft mode). Everything happens in the caller's transaction.
The merge reads stored rows and writes results computed from them, so writers
of the same table (two workers overlapping during a rebalance, the TTL sweeper,
a partition delete touching keys another worker owns) are serialised by an
exclusive transaction-level advisory lock per table, taken after the COPY into
the connection's private staging table so that the lock is held only for the
merge itself. Workers of different tables never wait for each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
import psycopg

from cdc_worker.coalesce import Coalesced, Key, RangeTombstone
from cdc_worker.decode import Bound
from cdc_worker.ranges import covers
from cdc_worker.target import META_COLUMNS, DeleteMode, Target, qi
from cdc_worker.tiebreak import canonical_sql, serialize
from cdc_worker.write_new import insert_new_sql

Tokens = dict[tuple[object, ...], int]  # partition key → its Cassandra token

_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _f(v: str | int | None) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, int):
        return str(v)
    return _esc(v)


def _esc(v: str) -> str:
    # Four substring tests cost ~1/20 of `translate`, which copies every value.
    if "\\" in v or "\t" in v or "\n" in v or "\r" in v:
        return v.translate(_ESC)
    return v


def _bound_json(b: Bound | None) -> str:
    return "null" if b is None else orjson.dumps({"v": list(b[0]), "incl": b[1]}).decode()


def _bound_from(j: object) -> Bound | None:
    if not isinstance(j, dict):
        return None
    return tuple(j["v"]), bool(j["incl"])


class SchemaBehind(Exception):
    """The table has columns this writer does not know (another worker added them): the
    writer must be rebuilt before it touches rows, or it would drop their metadata."""

    def __init__(self, columns: list[tuple[str, object]]) -> None:
        super().__init__(f"table has columns this worker does not know: {[c for c, _ in columns]}")
        self.columns = columns  # (PostgreSQL name, column comment)


@dataclass(slots=True)
class WriteResult:
    rows: int
    live: int
    dead: int
    new: int = 0  # of `rows`, inserted directly (write_new.py) rather than merged


class TableWriter:
    """SQL for one target table, built once per schema version (see `prepare`)."""

    def __init__(self, target: Target, attnums: dict[str, int]) -> None:
        self.t = t = target
        self.keys = t.key_columns
        self.part = t.partition_columns
        self.vals = t.value_columns
        self.attnums = attnums
        self.stage = qi(f"_cdc_stage_{t.lock_key & 0xFFFFFFFF:x}")
        self.pdel = qi(f"_cdc_pdel_{t.lock_key & 0xFFFFFFFF:x}")
        self.rowdel = qi(f"_cdc_rowdel_{t.lock_key & 0xFFFFFFFF:x}")
        self.rdel = qi(f"_cdc_rdel_{t.lock_key & 0xFFFFFFFF:x}")
        self.val_index = {c.source: i for i, c in enumerate(self.vals)}
        self.max_attnum = max(attnums.values(), default=0)
        self._forget: dict[frozenset[str], list[str]] = {}
        # The schema-version fence: columns added after this writer was built.
        self.newer_columns = (
            "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
            f"WHERE attrelid = '{t.fq.replace(chr(39), chr(39) * 2)}'::regclass "
            f"AND attnum > {self.max_attnum} AND NOT attisdropped "
            # Internal `_cdc*` columns others add (the scanner's `_cdc_token`) hold no source
            # data; source columns named `_cdc*` are stored as `__cdc*` (target.safe_name).
            "AND attname NOT LIKE '\\_cdc%' ORDER BY attnum"
        )
        self._build_sql()

    # -- SQL ----------------------------------------------------------------------------------
    def _build_sql(self) -> None:
        t, keys, part, vals = self.t, self.keys, self.part, self.vals
        K = [qi(c.target) for c in keys]
        P = [qi(c.target) for c in part]
        kdef = ", ".join(f"{qi(c.target)} {c.pg_type} NOT NULL" for c in keys)
        pdef = ", ".join(f"{qi(c.target)} {c.pg_type} NOT NULL" for c in part)
        vdef = "".join(f", {qi(c.target)} text" for c in vals)
        klist = ", ".join(K)
        self.temp_ddl = [
            # Dropped first: after schema evolution the staging table needs the new columns.
            f"DROP TABLE IF EXISTS {self.stage}",
            f"CREATE TEMP TABLE {self.stage} ({kdef}{vdef}, _cdc_ts bigint[], "
            "_cdc_exp bigint[], _cdc_marker_ts bigint, _cdc_marker_exp bigint, _cdc_del_ts bigint, "
            "_cdc_tie boolean[], _cdc_token bigint, "
            f"PRIMARY KEY ({klist})) ON COMMIT DELETE ROWS",
            f"CREATE TEMP TABLE IF NOT EXISTS {self.pdel} ({pdef}, _cdc_ts bigint NOT NULL) "
            "ON COMMIT DELETE ROWS",
            f"CREATE TEMP TABLE IF NOT EXISTS {self.rowdel} ({kdef}, _cdc_ts bigint NOT NULL) "
            "ON COMMIT DELETE ROWS",
            f"CREATE TEMP TABLE IF NOT EXISTS {self.rdel} (_cdc_idx int NOT NULL, {pdef}) "
            "ON COMMIT DELETE ROWS",
        ]
        staged = (
            f"COPY {self.stage} ({', '.join([*K, *(qi(c.target) for c in vals)])}, _cdc_ts, "
            "_cdc_exp, _cdc_marker_ts, _cdc_marker_exp, _cdc_del_ts"
        )
        self.copy_stage = f"{staged}) FROM STDIN"
        self.copy_stage_tok = f"{staged}, _cdc_token) FROM STDIN"
        self.copy_pdel = f"COPY {self.pdel} ({', '.join(P)}, _cdc_ts) FROM STDIN"
        self.copy_rowdel = f"COPY {self.rowdel} ({klist}, _cdc_ts) FROM STDIN"
        self.copy_rdel = f"COPY {self.rdel} (_cdc_idx, {', '.join(P)}) FROM STDIN"
        # The side tables hold one write's deletes only: emptied after use, and all four at
        # once before each event of the per-event fallback (apply.py, `_isolate`).
        self.clear_sql = f"TRUNCATE {self.stage}, {self.pdel}, {self.rowdel}, {self.rdel}"

        def on(a: str, b: str, cols: list[str]) -> str:
            return " AND ".join(f"{a}.{c} = {b}.{c}" for c in cols)

        self.store_ptomb = (
            f"INSERT INTO {t.ptomb} ({', '.join(P)}, _cdc_del_ts) "
            f"SELECT {', '.join(P)}, max(_cdc_ts) FROM {self.pdel} GROUP BY {', '.join(P)} "
            f"ON CONFLICT ({', '.join(P)}) DO UPDATE SET "
            f"_cdc_del_ts = GREATEST({t.ptomb}._cdc_del_ts, EXCLUDED._cdc_del_ts), "
            "_cdc_recorded_at = now()"
        )
        upsert_del = (
            f"ON CONFLICT ({klist}) DO UPDATE SET _cdc_del_ts = "
            f"GREATEST({self.stage}._cdc_del_ts, EXCLUDED._cdc_del_ts)"
        )
        mk = ", ".join("m." + k for k in K)
        self.expand_pdel = (
            f"INSERT INTO {self.stage} ({klist}, _cdc_del_ts) SELECT {mk}, max(p._cdc_ts) "
            f"FROM {t.fq} m JOIN {self.pdel} p ON {on('m', 'p', P)} GROUP BY {mk} {upsert_del}"
        )
        self.apply_rowdel = (
            f"INSERT INTO {self.stage} ({klist}, _cdc_del_ts) SELECT {klist}, max(_cdc_ts) "
            f"FROM {self.rowdel} GROUP BY {klist} {upsert_del}"
        )
        self.apply_ptomb = (
            f"UPDATE {self.stage} s SET _cdc_del_ts = p._cdc_del_ts FROM {t.ptomb} p "
            f"WHERE {on('s', 'p', P)} AND p._cdc_del_ts > COALESCE(s._cdc_del_ts, -1)"
        )
        ktext = ", ".join(f"m.{k}::text" for k in K)
        self.rows_in_rdel = (
            f"SELECT DISTINCT r._cdc_idx, {ktext} FROM {t.fq} m "
            f"JOIN {self.rdel} r ON {on('m', 'r', P)}"
        )
        stext = ", ".join(f"s.{k}::text" for k in K)
        self.stage_vs_rtomb = (
            f"SELECT r._cdc_start, r._cdc_end, r._cdc_del_ts, {stext} FROM {self.stage} s "
            f"JOIN {t.rtomb} r ON {on('s', 'r', P)} "
            "WHERE r._cdc_del_ts > COALESCE(s._cdc_del_ts, -1)"
        )
        self.store_rtomb = (
            f"INSERT INTO {t.rtomb} ({', '.join(P)}, _cdc_start, _cdc_end, _cdc_del_ts) "
            f"VALUES ({', '.join(['%s'] * len(P))}, %s, %s, %s) "
            f"ON CONFLICT ({', '.join(P)}, _cdc_start, _cdc_end) DO UPDATE SET _cdc_del_ts = "
            f"GREATEST({t.rtomb}._cdc_del_ts, EXCLUDED._cdc_del_ts), _cdc_recorded_at = now()"
        )
        self.merge = self._merge_sql()
        self._merge_token: str | None = None
        self._new_sql: dict[bool, str] = {}
        self.ties = self._ties_sql()
        self.sweep_sql = self._sweep_sql()

    def by_attnum(self, item: Callable[[int], str]) -> str:
        """A `bigint[]` laid out like the stored `_cdc_ts`/`_cdc_exp`: at each value column's
        attnum, `item(i)` for that column (i: its index in `vals`); NULL at other attnums."""
        pos = {self.attnums[c.target]: i for i, c in enumerate(self.vals)}
        items = [
            item(pos[a]) if a in pos else "NULL::bigint" for a in range(1, max(pos, default=0) + 1)
        ]
        return f"ARRAY[{', '.join(items)}]::bigint[]" if items else "NULL::bigint[]"

    def _merge_sql(self, token: bool = False) -> str:
        """The merge; with `token`, new and updated rows also take the staged `_cdc_token` (the
        scanner's backfill: the token travels with the row instead of a second UPDATE)."""
        t, keys, vals = self.t, self.keys, self.vals
        soft = t.delete_mode is DeleteMode.SOFT
        K = [qi(c.target) for c in keys]
        jk = " AND ".join(f"m.{k} = s.{k}" for k in K)
        jd = " AND ".join(f"d.{k} = s.{k}" for k in K)

        def o(meta: str) -> str:
            return f"m.{meta}" if soft else f"COALESCE(m.{meta}, d.{meta})"

        def rank(v: str, e: str) -> str:  # tiebreak.cell_rank
            return f"CASE WHEN {v} IS NULL THEN (CASE WHEN {e} IS NULL THEN 2 ELSE 1 END) " \
                   f"WHEN {e} IS NOT NULL THEN 1 ELSE 0 END"  # fmt: skip

        j = [f"s.{k}" for k in K]
        w = ["j.*"]
        mrg = [f"j.{k}" for k in K]
        undecided: list[str] = []
        for i, c in enumerate(vals):
            a, col, typ = self.attnums[c.target], qi(c.target), c.pg_type
            # The stored cell as Cassandra holds it: a soft-deleted row still shows its last
            # values, but its cells are tombstones or expired.
            stored = f"CASE WHEN m._cdc_deleted_at IS NULL THEN m.{col} END" if soft else f"m.{col}"
            j += [
                f"s.{col} AS _cdcs{i}", f"{stored} AS _cdco{i}", f"m.{col} AS _cdcd{i}",
                f"s._cdc_ts[{i + 1}] AS _cdcst{i}", f"({o('_cdc_ts')})[{a}] AS _cdcot{i}",
                f"s._cdc_exp[{i + 1}] AS _cdcse{i}", f"({o('_cdc_exp')})[{a}] AS _cdcoe{i}",
                f"s._cdc_tie[{i + 1}] AS _cdcf{i}",
            ]  # fmt: skip
            # Equal timestamps (Cells.resolveRegular): tombstone > expiring > live, then the
            # later expiry, then the greater serialized value. That last step is decided in
            # Python (tiebreak.py) and comes back as the staged flag `_cdc_tie`; until then the
            # stored value stays and the tie is counted as undecided.
            same = (
                f"_cdcst{i} = _cdcot{i} AND ({rank(f'_cdcs{i}', f'_cdcse{i}')}) = "
                f"({rank(f'_cdco{i}', f'_cdcoe{i}')}) AND COALESCE(_cdcse{i}, 0) = "
                f"COALESCE(_cdcoe{i}, 0)"
            )
            w.append(
                f"(_cdcst{i} IS NOT NULL AND (_cdcot{i} IS NULL OR _cdcst{i} > _cdcot{i} "
                f"OR (_cdcst{i} = _cdcot{i} AND ("
                f"({rank(f'_cdcs{i}', f'_cdcse{i}')}) > ({rank(f'_cdco{i}', f'_cdcoe{i}')}) OR "
                f"(({rank(f'_cdcs{i}', f'_cdcse{i}')}) = ({rank(f'_cdco{i}', f'_cdcoe{i}')}) AND ("
                f"COALESCE(_cdcse{i}, 0) > COALESCE(_cdcoe{i}, 0) OR "
                f"(COALESCE(_cdcse{i}, 0) = COALESCE(_cdcoe{i}, 0) AND COALESCE(_cdcf{i}, false)"
                f"))))))) AS _cdcw{i}"
            )
            undecided.append(
                f"({same} AND _cdcf{i} IS NULL AND _cdcs{i} IS NOT NULL AND _cdco{i} IS NOT NULL "
                f"AND _cdcs{i}::{typ}::text IS DISTINCT FROM _cdco{i}::{typ}::text)"
            )
            mrg += [
                f"CASE WHEN _cdcw{i} THEN _cdcs{i}::{typ} ELSE _cdco{i} END AS _cdcv{i}",
                f"CASE WHEN _cdcw{i} THEN _cdcst{i} ELSE _cdcot{i} END AS _cdct{i}",
                f"CASE WHEN _cdcw{i} THEN _cdcse{i} ELSE _cdcoe{i} END AS _cdce{i}",
                f"_cdcd{i}",
            ]
        w.append(f"COALESCE({' OR '.join(undecided) or 'false'}, false) AS _cdctie")
        mrg.append("_cdctie")
        size = max([self.attnums[c.target] for c in vals], default=0)
        # Column-preserving: array elements beyond this writer's columns (columns another worker
        # added) are carried over unchanged, never dropped.
        j += [
            f"({o('_cdc_ts')})[{size + 1}:] AS _cdcxts",
            f"({o('_cdc_exp')})[{size + 1}:] AS _cdcxexp",
            f"GREATEST(s._cdc_del_ts, m._cdc_del_ts{'' if soft else ', d._cdc_del_ts'}) AS _cdcdel",
            "s._cdc_marker_ts AS _cdcsm", "s._cdc_marker_exp AS _cdcsme",
            f"{o('_cdc_marker_ts')} AS _cdcom", f"{o('_cdc_marker_exp')} AS _cdcome",
            f"{'m._cdc_deleted_at' if soft else 'NULL::timestamptz'} AS _cdcodel_at",
            *(["s._cdc_token AS _cdctok"] if token else []),
        ]  # fmt: skip
        w.append(  # LivenessInfo.supersedes: an expiring marker wins, then the later expiry
            "(_cdcsm IS NOT NULL AND (_cdcom IS NULL OR _cdcsm > _cdcom OR (_cdcsm = _cdcom AND "
            "_cdcsme IS NOT NULL AND (_cdcome IS NULL OR _cdcsme > _cdcome)))) AS _cdcwm"
        )
        mrg += [
            "j._cdcdel", "j._cdcodel_at", "j._cdcxts", "j._cdcxexp",
            "CASE WHEN _cdcwm THEN _cdcsm ELSE _cdcom END AS _cdcmt",
            "CASE WHEN _cdcwm THEN _cdcsme ELSE _cdcome END AS _cdcme",
            *(["j._cdctok"] if token else []),
        ]  # fmt: skip
        live = [
            f"COALESCE(_cdct{i} > COALESCE(_cdcdel, -1) AND _cdcv{i} IS NOT NULL "
            f"AND (_cdce{i} IS NULL OR _cdce{i} > %(now)s), false)"
            for i in range(len(vals))
        ]
        live_m = (
            "COALESCE(_cdcmt > COALESCE(_cdcdel, -1) "
            "AND (_cdcme IS NULL OR _cdcme > %(now)s), false)"
        )
        f = [f"m.{k}" for k in K] + [f"{lv} AS _cdcl{i}" for i, lv in enumerate(live)]
        f += [f"m._cdcv{i}, m._cdct{i}, m._cdce{i}, m._cdcd{i}" for i in range(len(vals))]
        f.append("m._cdctie")
        f += ["m._cdcdel", "m._cdcodel_at", "m._cdcmt", "m._cdcme", f"{live_m} AS _cdclm"]
        f += ["m._cdcxts", "m._cdcxexp", *(["m._cdctok"] if token else [])]
        alive = " OR ".join([*(f"_cdcl{i}" for i in range(len(vals))), "_cdclm"])

        after_del = "COALESCE(_cdcdel, -1)"
        r = [f"f.{k}" for k in K]
        for i, c in enumerate(vals):
            value = f"CASE WHEN _cdcl{i} THEN _cdcv{i} END"
            if soft:
                value = f"CASE WHEN ({alive}) THEN {value} ELSE _cdcd{i} END"
            r.append(f"{value} AS {qi(c.target)}")
        r += [
            self.by_attnum(lambda i: f"CASE WHEN _cdct{i} > {after_del} THEN _cdct{i} END")
            + " || _cdcxts AS _cdc_ts",
            self.by_attnum(lambda i: f"CASE WHEN _cdct{i} > {after_del} THEN _cdce{i} END")
            + " || _cdcxexp AS _cdc_exp",
            "CASE WHEN _cdcmt > COALESCE(_cdcdel, -1) THEN _cdcmt END AS _cdc_marker_ts",
            "CASE WHEN _cdcmt > COALESCE(_cdcdel, -1) THEN _cdcme END AS _cdc_marker_exp",
            "_cdcdel AS _cdc_del_ts",
            "LEAST(" + ", ".join([*(f"CASE WHEN _cdcl{i} THEN _cdce{i} END"
                                    for i in range(len(vals))),
                                  "CASE WHEN _cdclm THEN _cdcme END"]) + ") AS _cdc_next_exp",
            f"({alive}) AS _cdcalive",
            "_cdctie",
            "_cdcodel_at",
            *(["_cdctok"] if token else []),
        ]  # fmt: skip

        # MATERIALIZED: each stage computes its columns once per row. Inlined (PostgreSQL's
        # default for a CTE used once), every reference to an earlier stage's column repeats
        # that column's whole expression, and they nest: the merge spent ~5x longer evaluating
        # the same CASE trees over and over than joining and writing.
        cte = (
            f"WITH j AS MATERIALIZED (SELECT {', '.join(j)} FROM {self.stage} s "
            f"LEFT JOIN {t.fq} m ON {jk}"
            + ("" if soft else f" LEFT JOIN {t.dead} d ON {jd}")
            + f"), w AS MATERIALIZED (SELECT {', '.join(w)} FROM j), "
            f"m AS MATERIALIZED (SELECT {', '.join(mrg)} FROM w j), "
            f"f AS MATERIALIZED (SELECT {', '.join(f)} FROM m), "
            f"r AS (SELECT {', '.join(r)} FROM f)"
        )
        cols = [*K, *(qi(c.target) for c in vals)]
        meta = [n for n, _ in META_COLUMNS]
        main_cols = [*cols, *meta, "_cdc_next_exp", "_cdc_updated_at"]
        main_sel = [*(f"r.{c}" for c in [*cols, *meta, "_cdc_next_exp"]), "now()"]
        if soft:
            main_cols.append("_cdc_deleted_at")
            main_sel.append(
                "CASE WHEN r._cdcalive THEN NULL ELSE COALESCE(r._cdcodel_at, now()) END"
            )
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in main_cols[len(K) :])
        if token:
            main_cols.append("_cdc_token")
            main_sel.append("r._cdctok")
            sets += ", _cdc_token = COALESCE(EXCLUDED._cdc_token, _cdcx._cdc_token)"
        klist = ", ".join(K)
        where_live = "" if soft else " WHERE r._cdcalive"
        stmt = (
            f"{cte}, up AS (INSERT INTO {t.fq}{' AS _cdcx' if token else ''} "
            f"({', '.join(main_cols)}) "
            f"SELECT {', '.join(main_sel)} FROM r{where_live} "
            f"ON CONFLICT ({klist}) DO UPDATE SET {sets} RETURNING 1)"
        )
        if not soft:
            rk = " AND ".join(f"x.{k} = r.{k}" for k in K)
            dcols = [*K, *meta, "_cdc_dead_at"]
            dsets = ", ".join(f"{c} = EXCLUDED.{c}" for c in dcols[len(K) :])
            stmt += (
                f", dm AS (DELETE FROM {t.fq} x USING r WHERE {rk} AND NOT r._cdcalive RETURNING 1)"
                f", di AS (INSERT INTO {t.dead} ({', '.join(dcols)}) SELECT "
                f"{', '.join(f'r.{c}' for c in [*K, *meta])}, now() FROM r WHERE NOT r._cdcalive "
                f"ON CONFLICT ({klist}) DO UPDATE SET {dsets} RETURNING 1)"
                f", dd AS (DELETE FROM {t.dead} x USING r WHERE {rk} AND r._cdcalive RETURNING 1)"
            )
        stmt += (
            " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM r WHERE r._cdcalive), "
            "(SELECT count(*) FROM r WHERE r._cdctie)"
        )
        if not soft:
            stmt += (
                ", (SELECT count(*) FROM dm), (SELECT count(*) FROM di), (SELECT count(*) FROM dd)"
            )
        return stmt

    def _ties_sql(self) -> str:
        """The undecided ties the merge left: each cell's staged and stored value, canonical."""
        t, K = self.t, [qi(c.target) for c in self.keys]
        conds, sv, ov = [], [], []
        for i, c in enumerate(self.vals):
            a, col, typ = self.attnums[c.target], qi(c.target), c.pg_type
            cond = (
                f"(s._cdc_ts[{i + 1}] = m._cdc_ts[{a}] AND s._cdc_tie[{i + 1}] IS NULL "
                f"AND s.{col} IS NOT NULL AND m.{col} IS NOT NULL "
                f"AND COALESCE(s._cdc_exp[{i + 1}], 0) = COALESCE(m._cdc_exp[{a}], 0) "
                f"AND s.{col}::{typ}::text IS DISTINCT FROM m.{col}::{typ}::text)"
            )
            conds.append(cond)
            sv.append(f"CASE WHEN {cond} THEN {canonical_sql(c.col.cql, f's.{col}::{typ}')} END")
            ov.append(f"CASE WHEN {cond} THEN {canonical_sql(c.col.cql, f'm.{col}::{typ}')} END")
        live = " AND m._cdc_deleted_at IS NULL" if t.delete_mode is DeleteMode.SOFT else ""
        return (
            f"SELECT s.ctid::text, ARRAY[{', '.join(sv) or 'NULL'}]::text[], "
            f"ARRAY[{', '.join(ov) or 'NULL'}]::text[] FROM {self.stage} s JOIN {t.fq} m ON "
            + " AND ".join(f"m.{k} = s.{k}" for k in K)
            + f" WHERE ({' OR '.join(conds) or 'false'}){live}"
        )

    def fence(self, cur: psycopg.Cursor[tuple[object, ...]]) -> None:
        """Under the table's lock: refuse to touch rows if the table has columns added after
        this writer was built (ALTER TABLE ADD seen by another worker). A column added after
        this check holds no data before this transaction ends: every write of data takes the
        table's lock, which this transaction holds."""
        cur.execute(self.newer_columns)
        rows = cur.fetchall()
        if rows:
            raise SchemaBehind([(str(name), comment) for name, comment in rows])

    def _decide_ties(self, cur: psycopg.Cursor[tuple[object, ...]]) -> bool:
        """Flag in the staging table which side wins each undecided tie; False if none."""
        cur.execute(self.ties)
        flags: list[tuple[list[bool | None], str]] = []
        for ctid, staged, stored in cur.fetchall():
            assert isinstance(staged, list)
            assert isinstance(stored, list)
            row: list[bool | None] = []
            for c, sv, ov in zip(self.vals, staged, stored, strict=True):
                row.append(
                    None if sv is None else serialize(c.col.cql, sv) > serialize(c.col.cql, ov)
                )
            flags.append((row, str(ctid)))
        if flags:
            cur.executemany(f"UPDATE {self.stage} SET _cdc_tie = %s WHERE ctid = %s::tid", flags)
        return bool(flags)

    # -- data ---------------------------------------------------------------------------------
    def _stage_lines(self, batch: Coalesced, tokens: Tokens | None) -> Iterable[str]:
        # The hot path of both the stream and backfill (about half of backfill's Python time):
        # escaping inlined, and a cell's write time turned into text once per distinct value
        # (a row's cells mostly share one).
        n = len(self.vals)
        idx = self.val_index
        nulls, anulls = ["\\N"] * n, ["NULL"] * n
        npart = len(self.part)
        esc = _ESC
        for key, row in batch.rows.items():
            # Fields as COPY text directly (values escaped; array elements are integers).
            values, ts, exp = nulls.copy(), anulls.copy(), anulls.copy()
            last_ts, last_text = None, ""
            for name, (cts, value, cexp) in row.cells.items():
                i = idx.get(name)
                if i is None:
                    continue  # excluded column
                if value is not None:
                    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
                        value = value.translate(esc)
                    values[i] = value
                if cts != last_ts:
                    last_ts, last_text = cts, str(cts)
                ts[i] = last_text
                if cexp is not None:
                    exp[i] = str(cexp)
            m, mx, d = row.marker_ts, row.marker_exp, row.del_ts
            fields = [
                *map(_f, key),
                *values,
                "{" + ",".join(ts) + "}",
                "{" + ",".join(exp) + "}",
                "\\N" if m is None else str(m),
                "\\N" if mx is None else str(mx),
                "\\N" if d is None else str(d),
            ]
            if tokens is not None:
                fields.append(str(tokens[key[:npart]]))
            yield "\t".join(fields) + "\n"

    def render(self, batch: Coalesced, tokens: Tokens | None = None) -> str:
        """The batch's rows as COPY text (pure; done before the write, off its thread); with
        `tokens` (partition key → Cassandra token), each row also carries its `_cdc_token`."""
        return "".join(self._stage_lines(batch, tokens))

    def write(
        self,
        cur: psycopg.Cursor[tuple[object, ...]],
        batch: Coalesced,
        now_us: int,
        rendered: str | None = None,
        reread: frozenset[str] = frozenset(),
        tokens: Tokens | None = None,
        new_first: bool = False,
    ) -> WriteResult:
        """Merge `batch`; the cells it holds of the `reread` columns replace the stored ones
        whatever their times (reread.py: they were read from Cassandra after what is stored).
        `tokens`: the rows' partition tokens (the scanner's backfill; `rendered` must have been
        rendered with them), staged with the rows and stored by the merge in `_cdc_token`; the
        target table must have that column. `new_first`: rows PostgreSQL has never seen are
        inserted directly first (write_new.py); the merge is skipped when that took every
        staged row, and otherwise runs on them all; worth it where most rows are new (a
        backfill)."""
        payload = self.render(batch, tokens) if rendered is None else rendered
        with cur.copy(self.copy_stage if tokens is None else self.copy_stage_tok) as cp:
            if payload:
                cp.write(payload)
        merge = self.merge
        if tokens is not None:
            if self._merge_token is None:
                self._merge_token = self._merge_sql(token=True)
            merge = self._merge_token
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.t.lock_key,))
        self.fence(cur)
        for stmt in self._forget_sql(reread):
            cur.execute(stmt)
        if batch.partition_dels:
            with cur.copy(self.copy_pdel) as cp:
                for pk, ts in batch.partition_dels.items():
                    cp.write("\t".join([*map(_f, pk), str(ts)]) + "\n")
            cur.execute(self.store_ptomb)
            cur.execute(self.expand_pdel)
            cur.execute(f"DELETE FROM {self.pdel}")
        if batch.range_dels:
            self._batch_ranges(cur, batch.range_dels)
        cur.execute(self.apply_ptomb)
        self._stored_ranges(cur)
        inserted = 0
        if new_first:
            inserted = self._insert_new(cur, now_us, token=tokens is not None)
            if inserted == len(batch.rows) and not batch.partition_dels and not batch.range_dels:
                return WriteResult(inserted, inserted, 0, inserted)
        # After a partial direct insert the merge takes every staged row again (write_new.py):
        # its counts include the inserted ones.
        cur.execute(merge, {"now": now_us})
        res = cur.fetchone()
        assert res is not None
        if int(str(res[2])) and self._decide_ties(cur):
            cur.execute(merge, {"now": now_us})  # idempotent; now with the ties decided
            res = cur.fetchone()
            assert res is not None
        total, live = int(str(res[0])), int(str(res[1]))
        return WriteResult(total, live, total - live, inserted)

    def _insert_new(self, cur: psycopg.Cursor[tuple[object, ...]], now_us: int, token: bool) -> int:
        sql = self._new_sql.get(token)
        if sql is None:
            sql = self._new_sql[token] = insert_new_sql(self, token)
        cur.execute(sql, {"now": now_us})
        row = cur.fetchone()
        return int(str(row[0])) if row is not None else 0

    def _forget_sql(self, columns: frozenset[str]) -> list[str]:
        """Drop the stored write time of `columns` where the batch stages a cell of them, so
        the staged cell wins the merge unless a tombstone newer than it shadows it. Built once
        per column set (it was rebuilt for every batch of every table)."""
        cached = self._forget.get(columns)
        if cached is None:
            cached = self._forget[columns] = self._build_forget_sql(columns)
        return cached

    def _build_forget_sql(self, columns: frozenset[str]) -> list[str]:
        out: list[str] = []
        on = " AND ".join(f"x.{qi(k.target)} = s.{qi(k.target)}" for k in self.keys)
        for c in self.vals:
            if c.source not in columns:
                continue
            a, i = self.attnums[c.target], self.val_index[c.source] + 1
            for table in (self.t.fq, *([] if self.t.delete_mode is DeleteMode.SOFT
                                       else [self.t.dead])):  # fmt: skip
                out.append(
                    f"UPDATE {table} x SET _cdc_ts[{a}] = NULL, _cdc_exp[{a}] = NULL "
                    f"FROM {self.stage} s WHERE {on} AND s._cdc_ts[{i}] IS NOT NULL "
                    f"AND x._cdc_ts[{a}] IS NOT NULL"
                )
        return out

    def _batch_ranges(
        self, cur: psycopg.Cursor[tuple[object, ...]], range_dels: dict[Key, list[RangeTombstone]]
    ) -> None:
        tombs: list[tuple[Key, RangeTombstone]] = [
            (pk, t) for pk, ts in range_dels.items() for t in ts
        ]
        for pk, t in tombs:
            cur.execute(self.store_rtomb, (*pk, _bound_json(t.start), _bound_json(t.end), t.ts))
        with cur.copy(self.copy_rdel) as cp:
            for i, (pk, _) in enumerate(tombs):
                cp.write("\t".join([str(i), *map(_f, pk)]) + "\n")
        cur.execute(self.rows_in_rdel)
        rows = cur.fetchall()
        cur.execute(f"DELETE FROM {self.rdel}")
        pk_len = len(self.part)
        hits: list[tuple[tuple[str, ...], int]] = []
        for row in rows:
            t = tombs[int(str(row[0]))][1]
            key = tuple(str(v) for v in row[1:])
            if covers(self.t.schema.clustering, key[pk_len:], t.start, t.end):
                hits.append((key, t.ts))
        self._rowdel(cur, hits)

    def clear(self, cur: psycopg.Cursor[tuple[object, ...]]) -> None:
        """Empty the staging and side tables (before re-applying one event of a failed batch)."""
        cur.execute(self.clear_sql)

    def _stored_ranges(self, cur: psycopg.Cursor[tuple[object, ...]]) -> None:
        cur.execute(self.stage_vs_rtomb)
        rows = cur.fetchall()
        if not rows:
            return
        pk_len = len(self.part)
        hits: list[tuple[tuple[str, ...], int]] = []
        for start, end, ts, *key_vals in rows:
            key = tuple(str(v) for v in key_vals)
            if covers(self.t.schema.clustering, key[pk_len:], _bound_from(start), _bound_from(end)):
                hits.append((key, int(str(ts))))
        self._rowdel(cur, hits)

    def _rowdel(
        self, cur: psycopg.Cursor[tuple[object, ...]], hits: list[tuple[tuple[str, ...], int]]
    ) -> None:
        if not hits:
            return
        with cur.copy(self.copy_rowdel) as cp:
            for key, ts in hits:
                cp.write("\t".join([*map(_f, key), str(ts)]) + "\n")
        cur.execute(self.apply_rowdel)
        cur.execute(f"TRUNCATE {self.rowdel}")

    # -- housekeeping ---------------------------------------------------------------------------
    def _sweep_sql(self) -> str:
        """One chunk of due rows: rows left with nothing live leave set-based in one statement
        (hard mode: moved to `_cdc_dead_*` with their metadata, as the merge would); the
        others (a live cell or marker remains, or soft mode) are staged for the merge."""
        t, K = self.t, [qi(c.target) for c in self.keys]
        klist = ", ".join(K)
        live = [
            f"({qi(c.target)} IS NOT NULL AND (_cdc_exp[{self.attnums[c.target]}] IS NULL "
            f"OR _cdc_exp[{self.attnums[c.target]}] > %(now)s))"
            for c in self.vals
        ]
        live.append("(_cdc_marker_ts IS NOT NULL AND (_cdc_marker_exp IS NULL OR "
                    "_cdc_marker_exp > %(now)s))")  # fmt: skip
        gone = "false" if t.delete_mode is DeleteMode.SOFT else f"NOT ({' OR '.join(live)})"
        meta = [n for n, _ in META_COLUMNS]
        sql = (
            f"WITH due AS (SELECT ctid AS _cdcctid, {klist}, {gone} AS _cdcgone FROM {t.fq} "
            "WHERE _cdc_next_exp <= %(now)s ORDER BY _cdc_next_exp LIMIT %(limit)s), "
            f"st AS (INSERT INTO {self.stage} ({klist}) SELECT {klist} FROM due "
            "WHERE NOT _cdcgone RETURNING 1)"
        )
        if t.delete_mode is DeleteMode.HARD:
            dcols = [*K, *meta, "_cdc_dead_at"]
            dsets = ", ".join(f"{c} = EXCLUDED.{c}" for c in dcols[len(K) :])
            sql += (
                # By ctid (a TID scan: the rows just found), never a join that could scan the table.
                f", gone AS (DELETE FROM {t.fq} m WHERE m.ctid = ANY(ARRAY(SELECT _cdcctid "
                "FROM due WHERE _cdcgone)) "
                f"RETURNING {', '.join(f'm.{c}' for c in [*K, *meta])}), "
                f"di AS (INSERT INTO {t.dead} ({', '.join(dcols)}) SELECT "
                f"{', '.join([*K, *meta])}, now() FROM gone "
                f"ON CONFLICT ({klist}) DO UPDATE SET {dsets} RETURNING 1)"
                " SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM st), "
                "(SELECT count(*) FROM di)"
            )
        else:
            sql += " SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM st), 0"
        return sql

    def sweep(self, cur: psycopg.Cursor[tuple[object, ...]], now_us: int, limit: int) -> int:
        """Re-merge up to `limit` rows whose next expiry has passed, oldest first (one chunk of
        the sweeper, sweep.py); returns the rows swept."""
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.t.lock_key,))
        self.fence(cur)
        cur.execute(self.sweep_sql, {"now": now_us, "limit": limit})
        res = cur.fetchone()
        assert res is not None
        due, staged = int(str(res[0])), int(str(res[1]))
        if staged:
            cur.execute(self.apply_ptomb)
            cur.execute(self.merge, {"now": now_us})
        return due

    def pending(self, cur: psycopg.Cursor[tuple[object, ...]], now_us: int) -> int:
        """Rows whose next expiry has passed and that the sweeper has not re-merged yet."""
        cur.execute(f"SELECT count(*) FROM {self.t.fq} WHERE _cdc_next_exp <= %s", (now_us,))
        row = cur.fetchone()
        return int(str(row[0])) if row is not None else 0

    def purge(self, cur: psycopg.Cursor[tuple[object, ...]], grace_seconds: int) -> None:
        """Drop tombstones older than the grace period."""
        cutoff = "now() - make_interval(secs => %s)"
        cur.execute(f"DELETE FROM {self.t.dead} WHERE _cdc_dead_at < {cutoff}", (grace_seconds,))
        for side in (self.t.ptomb, self.t.rtomb):
            cur.execute(f"DELETE FROM {side} WHERE _cdc_recorded_at < {cutoff}", (grace_seconds,))
