"""Prepare a target table: create or adopt it, add what is missing, learn its attnums.

Runs under a transaction-scoped advisory lock per table, so workers starting
together (or adding the same new column) never race on DDL.
"""

from __future__ import annotations

import orjson
import psycopg
from psycopg import sql

from cdc_worker.target import Target, ddl, qi
from cdc_worker.write import TableWriter

_DDL_SALT = 0x5D1  # distinct from the data lock of the same table
# Room left in each page of a table the worker creates: most merges rewrite rows that exist,
# and an update that fits in its page with no indexed column changed is a HOT update (no new
# index entries). With full pages (the default, 100) about two thirds of the benchmark's
# updates were HOT, with 80 about 85 %. Tables the worker adopts keep their own setting.
FILLFACTOR = 80
COMMENT_PREFIX = "cass-cdc-pg:"


def column_comment(source: str, cql: str) -> str:
    """What a column added by schema evolution says about itself, for workers still behind."""
    return COMMENT_PREFIX + orjson.dumps({"source": source, "cql": cql}).decode()


def parse_comment(text: object) -> tuple[str, str] | None:
    """(source name, CQL type) from `column_comment`, or None for a column not added by us."""
    if not isinstance(text, str) or not text.startswith(COMMENT_PREFIX):
        return None
    try:
        doc = orjson.loads(text[len(COMMENT_PREFIX) :])
        return str(doc["source"]), str(doc["cql"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


class IncompatibleTable(Exception):
    """An existing table cannot hold the replicated data; the message says which column."""


def _regtype(conn: psycopg.Connection[tuple[object, ...]], typ: str) -> str:
    row = conn.execute("SELECT %s::regtype::text", (typ,)).fetchone()
    assert row is not None
    return str(row[0])


def prepare(
    conn: psycopg.Connection[tuple[object, ...]], target: Target, *, create: bool
) -> TableWriter:
    fq = target.fq
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (target.lock_key ^ _DDL_SALT,))
        row = conn.execute("SELECT to_regclass(%s)", (fq,)).fetchone()
        exists = row is not None and row[0] is not None
        if not exists and not create:
            raise IncompatibleTable(f"table {fq} does not exist and createTable is false")
        if exists:
            _check_key(conn, target)
        for stmt in ddl(target):
            conn.execute(stmt)
        if not exists:
            conn.execute(f"ALTER TABLE {fq} SET (fillfactor = {FILLFACTOR})")
        target = _learn_added_columns(conn, target)
        current = {
            str(name): (str(typ), int(str(num)))
            for name, typ, num in conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attnum FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (fq,),
            ).fetchall()
        }
        for col in target.value_columns:
            if col.target not in current:
                conn.execute(f"ALTER TABLE {fq} ADD COLUMN {qi(col.target)} {col.pg_type}")
                # Workers still on the old schema learn the column from here (write.py fence).
                conn.execute(
                    sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                        sql.SQL(f"{fq}.{qi(col.target)}"),
                        sql.Literal(column_comment(col.source, str(col.col.cql))),
                    )
                )
                continue
            want = _regtype(conn, col.pg_type)
            have = current[col.target][0]
            if have != want and have != "text":
                raise IncompatibleTable(
                    f"column {fq}.{col.target} is {have}; replicating {col.source} "
                    f"({col.col.cql}) needs {want} (or text)"
                )
        attnums = {
            str(name): int(str(num))
            for name, num in conn.execute(
                "SELECT attname, attnum FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (fq,),
            ).fetchall()
        }
    writer = TableWriter(target, attnums)
    for stmt in writer.temp_ddl:
        conn.execute(stmt)
    conn.commit()
    return writer


def _learn_added_columns(conn: psycopg.Connection[tuple[object, ...]], target: Target) -> Target:
    """The target with the columns other workers added by schema evolution (their comments say
    source name and CQL type). A writer built without them would pass the schema-version fence
    (write.py: it only looks for columns newer than the writer) and merge rows as if those
    columns did not exist: a delete would leave their values behind."""
    schema = target.schema
    for (comment,) in conn.execute(
        "SELECT col_description(attrelid, attnum) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attname NOT LIKE '\\_cdc%%' ORDER BY attnum",
        (target.fq,),
    ).fetchall():
        parsed = parse_comment(comment)
        if parsed is not None and parsed[0] not in schema.known:
            schema = schema.with_column(*parsed)
    return target if schema is target.schema else target.with_schema(schema)


def _check_key(conn: psycopg.Connection[tuple[object, ...]], target: Target) -> None:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (target.fq,),
    ).fetchall()
    have = {str(r[0]) for r in rows}
    want = {c.target for c in target.key_columns}
    if have != want:
        raise IncompatibleTable(
            f"table {target.fq} has primary key {sorted(have) or 'none'}; "
            f"the Cassandra primary key maps to {sorted(want)}"
        )
