"""Decode one Debezium Cassandra change event into a `Change` (plain data).

What the connector sends (docs/debezium-wire-format.md): `after` lists every
column; `null` means "not written by this mutation", `{value, deletion_ts,
set}` a written cell whose `deletion_ts` is the TTL expiry in µs. Key columns
always carry their value. `op` is `i`, `u`, `d` (row, or partition when a
clustering column is null) or `r` (range delete with `_range_start/_range_end`).
Both the plain payload and the `{schema, payload}` wrapper are accepted.
Anything malformed raises `DecodeError`, which dead-letters the event: `decode`
turns any other exception a malformed event provokes into one, so no input can
stop the worker.

Speed (docs/benchmarks.md): every replica emits its own copy of a change, and the copies
differ only in `source` fields the decoder does not use (commitlog file and position) and
the emission time. `Decoder` reads the envelope with a typed msgspec decoder that keeps
`after` as raw bytes, so a copy is recognised by (op, write time, keyspace, table, snapshot,
`after` bytes) — everything decoding depends on — and gets the change already decoded
without parsing its cells again. The distinct changes' `after` is read by a msgspec struct
built once per table schema (one field per column, unknown columns refused), which is about
2.5x cheaper than building a dict of dicts. Anything the fast path does not expect goes
through the reference path (`decode`), so errors and results are the same.

JSON is parsed by msgspec on both paths: integers beyond 64 bits (a `varint` sent as a number
rather than as the string `varint.handling.mode=string` gives) stay exact; orjson, used
before, turned them into floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Any

import msgspec

from cdc_worker.schema import TableSchema
from cdc_worker.typemap import to_pg_text


class DecodeError(ValueError):
    """The event cannot be applied: malformed, missing key, or an unconvertible value."""


# The write time given to snapshot cells: below every real write time (µs since the epoch).
SNAPSHOT_TS = 0


class UnknownColumns(Exception):
    def __init__(self, columns: dict[str, Any]) -> None:
        super().__init__(f"event carries columns not in the schema: {sorted(columns)}")
        self.columns = columns  # name -> the Kafka Connect field schema, or the raw cell


class Kind(IntEnum):
    WRITE = 0
    ROW_DELETE = 1
    PARTITION_DELETE = 2
    RANGE_DELETE = 3


Bound = tuple[tuple[str, ...], bool]  # clustering-prefix values (PG text), inclusive?


@dataclass(slots=True)
class Change:
    kind: Kind
    ts: int  # the mutation's write timestamp, µs
    key: tuple[str | None, ...]  # primary-key values as PG text; clustering may be None
    cells: dict[str, tuple[str | None, int | None]]  # column -> (PG text | None, expiry µs | None)
    row_marker: bool  # INSERT: the row exists even if every non-key column is null
    marker_expiry: int | None
    range_start: Bound | None = None
    range_end: Bound | None = None
    snapshot: bool = False


_META = ("_range_start", "_range_end")
_TOMBSTONE: tuple[str | None, int | None] = (None, None)


def parse_envelope(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise DecodeError("tombstone message (null value) is not a Debezium change event")
    try:
        doc = _json(raw)
    except msgspec.DecodeError as e:
        raise DecodeError(f"malformed JSON: {e}") from e
    if isinstance(doc, dict) and "payload" in doc and "schema" in doc:
        doc = doc["payload"]
    if not isinstance(doc, dict):
        raise DecodeError("event is not a JSON object")
    return doc


def decode(schema: TableSchema, raw: bytes | None) -> Change:
    try:
        return _decode(schema, raw)
    except (DecodeError, UnknownColumns):
        raise
    except Exception as e:  # poison input must reach the dead-letter topic, never stop the worker
        raise DecodeError(f"{type(e).__name__}: {e}") from e


def _decode(schema: TableSchema, raw: bytes | None) -> Change:
    env = parse_envelope(raw)
    op = env.get("op")
    source = env.get("source")
    after = env.get("after")
    if op not in ("i", "u", "d", "r"):
        raise DecodeError(f"unknown op {op!r}")
    if not isinstance(source, dict) or not isinstance(after, dict):
        raise DecodeError("event lacks `source` or `after`")
    ts = source.get("ts_us")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise DecodeError("source.ts_us is missing or not an integer")
    if source.get("keyspace") != schema.keyspace or source.get("table") != schema.table:
        raise DecodeError(
            f"event is for {source.get('keyspace')}.{source.get('table')}, "
            f"not {schema.keyspace}.{schema.table}"
        )
    snapshot = str(source.get("snapshot", "false")).lower() not in ("false", "")
    return _change(schema, op, ts, after, snapshot)


class _Cell(msgspec.Struct):
    """A written cell of `after` (other fields, such as `set`, are ignored)."""

    value: Any = None
    deletion_ts: Any = None


# `after` in schema order: the key columns, the value columns, then `_range_start` and
# `_range_end`. A column the event does not carry is None; a key or value "cell" that is not a
# JSON object is kept as it is (the key takes it as missing, a value column rejects it).
Cells = Sequence[Any]


def _cells(schema: TableSchema, after: dict[str, Any]) -> list[Any]:
    known = schema.known
    if not known.issuperset(after):
        raise UnknownColumns({n: c for n, c in after.items() if n not in known})
    out: list[Any] = []
    for name in _names(schema):
        c = after.get(name)
        out.append(_Cell(c.get("value"), c.get("deletion_ts")) if type(c) is dict else c)
    out += (after.get("_range_start"), after.get("_range_end"))
    return out


def _change(schema: TableSchema, op: str, ts: int, after: dict[str, Any], snapshot: bool) -> Change:
    """The change an envelope describes, from the fields decoding depends on (validated)."""
    return _build(schema, op, ts, _cells(schema, after), snapshot)


def _build(schema: TableSchema, op: str, ts: int, cells: Cells, snapshot: bool) -> Change:
    key: list[str | None] = []
    clustering = clustering_missing = 0
    key_plan = schema.key_plan
    for (name, conv, is_partition), cell in zip(key_plan, cells, strict=False):
        value = cell.value if type(cell) is _Cell else None
        if not is_partition:
            clustering += 1
        if value is None:
            if is_partition:
                raise DecodeError(f"partition key column {name!r} has no value")
            key.append(None)
            clustering_missing += 1
            continue
        key.append(_conv(conv, value, name))

    if op == "r":
        return Change(
            Kind.RANGE_DELETE, ts, tuple(key), {}, False, None,
            _bound(schema, cells[-2], "START"), _bound(schema, cells[-1], "END"),
        )  # fmt: skip
    if clustering_missing:
        if op != "d":
            raise DecodeError(
                f"op {op!r} without a clustering key: a static-column-only write, which the "
                "worker does not replicate yet (docs/worker.md, known limits)"
            )
        if clustering_missing < clustering:
            raise DecodeError(
                "a delete with only some clustering columns is not a partition delete"
            )
        return Change(Kind.PARTITION_DELETE, ts, tuple(key), {}, False, None)
    if op == "d":
        return Change(Kind.ROW_DELETE, ts, tuple(key), {}, False, None)

    out: dict[str, tuple[str | None, int | None]] = {}
    expiry: int | None = None
    name = ""
    try:  # around the loop, not each conversion: the hot path of decoding
        for (name, conv), cell in zip(schema.value_plan, cells[len(key_plan) :], strict=False):
            if cell is None:
                continue  # not written by this mutation
            if type(cell) is not _Cell:
                raise DecodeError(f"column {name!r}: expected a cell object")
            value = cell.value
            exp = cell.deletion_ts
            if exp is not None and type(exp) is not int:
                raise DecodeError(f"column {name!r}: deletion_ts is not an integer")
            if value is None:
                out[name] = _TOMBSTONE  # Cassandra gives a tombstone no TTL
            else:
                out[name] = (conv(value), exp)
                if exp is not None and (expiry is None or exp > expiry):
                    expiry = exp
    except DecodeError:
        raise
    except ValueError as e:
        raise DecodeError(f"column {name!r}: {e}") from e
    if snapshot:
        # A snapshot read carries the read's time, not the cells' write times (docs/worker.md,
        # "Snapshot rows"): every value it holds was either written before CDC began (older
        # than anything streamed) or was also streamed with its real time. So it yields to
        # any streamed write (SNAPSHOT_TS), its nulls are no deletions, and it asserts a row
        # marker only when it has nothing else to show the row exists by.
        out = {n: c for n, c in out.items() if c[0] is not None}
        return Change(Kind.WRITE, SNAPSHOT_TS, tuple(key), out, not out, expiry,
                      snapshot=True)  # fmt: skip
    return Change(Kind.WRITE, ts, tuple(key), out, op == "i", expiry)


def _names(schema: TableSchema) -> list[str]:
    return [n for n, _, _ in schema.key_plan] + [n for n, _ in schema.value_plan]


@lru_cache(maxsize=1024)
def _after_reader(schema: TableSchema) -> Callable[[bytes], tuple[Any, ...]] | None:
    """A decoder of `after` into `Cells` for this schema: a struct with one field per column,
    built once per schema (not per batch); None if the names do not allow one."""
    names = [*_names(schema), "_range_start", "_range_end"]
    if len(set(names)) != len(names):
        return None
    fields: list[tuple[str, Any, Any]] = [
        (f"c{i}", _Cell | None, None) for i in range(len(names) - 2)
    ]
    fields += [("rs", Any, None), ("re", Any, None)]
    rename = {f"c{i}": n for i, n in enumerate(names[:-2])} | {"rs": names[-2], "re": names[-1]}
    # Unknown columns are refused, so an event that carries one takes the reference path,
    # which reports them (UnknownColumns: schema evolution).
    struct = msgspec.defstruct("After", fields, rename=rename, forbid_unknown_fields=True)
    read = msgspec.json.Decoder(struct).decode
    astuple = msgspec.structs.astuple

    def cells(raw: bytes) -> tuple[Any, ...]:
        return astuple(read(raw))

    return cells


class _Source(msgspec.Struct):
    """The `source` fields decoding depends on; the others (file, pos, …) are skipped."""

    ts_us: Any = None
    keyspace: Any = None
    table: Any = None
    snapshot: Any = "false"


_NONE = msgspec.Raw(b"")


class _Envelope(msgspec.Struct):
    op: Any = None
    source: _Source | None = None
    after: msgspec.Raw = _NONE
    payload: msgspec.Raw = _NONE  # the {schema, payload} wrapper (the schema is skipped)
    schema: msgspec.Raw = _NONE


_read = msgspec.json.Decoder(_Envelope).decode
_json = msgspec.json.Decoder().decode
# What a decoded change of one table depends on besides the table: op, write time, snapshot,
# `after` bytes (keyspace and table are those of the decoder's schema).
CopyKey = tuple[str, int, str, bytes]


class Decoder:
    """Decodes a batch's events of one table, recognising replica copies (module docstring).

    `decode` returns the change and whether it is new in this batch; a copy returns the very
    `Change` of its first sighting, which coalescing once is enough for (coalesce.py is
    idempotent). One instance per batch and schema: the cache holds the batch's changes."""

    __slots__ = ("_after", "_seen", "keyspace", "schema", "table")

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.keyspace, self.table = schema.keyspace, schema.table
        self._seen: dict[CopyKey, Change] = {}
        self._after = _after_reader(schema)

    def decode(self, raw: bytes | None) -> tuple[Change, bool]:
        # One frame per event on the hot path; anything unexpected (malformed, another table,
        # odd types) takes the reference path, which judges it.
        key: CopyKey | None = None
        try:
            # msgspec does not check the text of the fields it skips: non-ASCII is checked here.
            if raw is not None and (raw.isascii() or _utf8(raw)):
                env = _read(raw)
                if env.payload is not _NONE and env.schema is not _NONE:
                    env = _read(env.payload)
                op, src = env.op, env.source
                if src is not None and env.after is not _NONE and op in _OPS:
                    ts, snap = src.ts_us, src.snapshot
                    # Exact types: `True == 1` and `1.0 == 1` must not make two events copies.
                    if (
                        type(ts) is int
                        and type(snap) is str
                        and src.keyspace == self.keyspace
                        and src.table == self.table
                        and type(src.keyspace) is str
                        and type(src.table) is str
                    ):
                        key = (op, ts, snap, bytes(env.after))
        except Exception:  # noqa: S110  # nosec B110
            pass  # the reference path below reports what this could not read
        if key is None:
            return decode(self.schema, raw), True
        ch = self._seen.get(key)
        if ch is not None:
            return ch, False
        try:
            snapshot = key[2].lower() not in ("false", "")
            if self._after is not None and key[0] != "r":
                ch = _build(self.schema, key[0], key[1], self._after(key[3]), snapshot)
            else:  # range deletes (their bounds are plain JSON) and unusual column names
                after = _json(key[3])
                if type(after) is not dict:
                    raise DecodeError("event lacks `source` or `after`")
                ch = _change(self.schema, key[0], key[1], after, snapshot)
        except Exception:  # the reference path gives the same error (or UnknownColumns)
            return decode(self.schema, raw), True
        self._seen[key] = ch
        return ch, True


_OPS = frozenset(("i", "u", "d", "r"))


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _conv(conv: Callable[[Any], str], value: Any, name: str) -> str:
    try:
        return conv(value)
    except ValueError as e:
        raise DecodeError(f"column {name!r}: {e}") from e


def _bound_value(cql: Any, value: Any, name: str) -> str:
    try:
        return to_pg_text(cql, _from_cql_string(cql.name, value))
    except ValueError as e:
        raise DecodeError(f"column {name!r}: {e}") from e


def _bound(schema: TableSchema, raw: Any, which: str) -> Bound | None:
    if raw is None:
        raise DecodeError(f"range delete without _range_{which.lower()}")
    if not isinstance(raw, dict) or not isinstance(raw.get("values"), list):
        raise DecodeError(f"_range_{which.lower()} is malformed")
    method = str(raw.get("method", ""))
    if which not in method:
        raise DecodeError(f"_range_{which.lower()} has method {method!r}")
    values = raw["values"]
    if not values:
        return None  # unbounded
    clustering = schema.clustering
    if len(values) > len(clustering):
        raise DecodeError("range bound has more values than clustering columns")
    out: list[str] = []
    for col, v in zip(clustering, values, strict=False):
        if not isinstance(v, dict) or v.get("name") != col.name:
            raise DecodeError(f"range bound value for {col.name!r} is malformed")
        out.append(_bound_value(col.cql, v.get("value"), col.name))
    return tuple(out), method.startswith("INCL")


def _from_cql_string(cql_name: str, s: Any) -> Any:
    """Range bounds carry values as Cassandra's string form; map them to the JSON form."""
    if not isinstance(s, str):
        return s
    if cql_name in ("tinyint", "smallint", "int", "bigint", "varint", "counter"):
        return int(s)
    if cql_name in ("float", "double"):
        return float(s)
    if cql_name == "boolean":
        return s.lower() == "true"
    if cql_name == "blob" and s.startswith("0x"):
        import base64

        return base64.b64encode(bytes.fromhex(s[2:])).decode()
    return s
