"""Cassandra's order for two writes of one cell at the same timestamp, and for row markers.

Cassandra 5.0 reconciles two cells of equal timestamp in `Cells.resolveRegular`
(org.apache.cassandra.db.rows.Cells): a tombstone beats an expiring cell, which
beats a live one (CASSANDRA-14592); two tombstones or two expiring cells: the
later local deletion time (for an expiring cell its expiry, which the connector
sends as `deletion_ts`); then the greater serialized value, the bytes compared
unsigned (`ValueAccessor.compare`). Row markers follow `LivenessInfo.supersedes`:
an expiring marker beats a non-expiring one, two expiring ones the later expiry.
(Verified against a Cassandra 5.0.9 node: `int` -1 beats 1000, `1.50` beats `1.5`.)

Ties are rare, so the serialized value is computed only when one has to be
decided: `serialize` takes a value in its PostgreSQL text form (what the decoder
produces, or what `canonical_sql` reads back from the table) and returns the
bytes Cassandra stores for it. The same function decides ties in the coalescer
and between a batch and the stored rows, so both agree, whatever the collation.

Exact for every type the worker maps, with three limits of what the value still
carries: a `duration` is only as exact as the event (Debezium 3 sends one
nanosecond count), a `decimal` with a negative scale (`1E+3`) is stored by
PostgreSQL with scale 0, and a UDT's field types are not in the schema, so UDT
values are ordered by their canonical JSON.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from ipaddress import ip_address
from typing import Any

import orjson

from cdc_worker.typemap import SCALARS, CqlType, pg_type

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_INT_BYTES = {"tinyint": 1, "smallint": 2, "int": 4, "bigint": 8, "counter": 8}
_U64 = (1 << 64) - 1


def cell_rank(value: object, exp: int | None) -> int:
    """2 tombstone, 1 expiring, 0 live (`Cells.resolveRegular`)."""
    if value is None:
        return 1 if exp is not None else 2  # a stored expired cell keeps its expiry, not its value
    return 1 if exp is not None else 0


def marker_key(ts: int, exp: int | None) -> tuple[int, bool, int]:
    """`LivenessInfo.supersedes` as a sort key: timestamp, then expiring, then later expiry."""
    return ts, exp is not None, exp or 0


# -- serialization (the bytes Cassandra compares) ---------------------------------------------
def serialize(t: CqlType, text: str) -> bytes:
    """Cassandra's serialized form of a value given as PostgreSQL text."""
    return _serializer(t)(text)


@cache
def _serializer(t: CqlType) -> Callable[[str], bytes]:
    n = t.name
    if n in SCALARS:
        return _SCALAR[n]
    if n == "vector":
        elem = t.args[0]
        return lambda s: b"".join(serialize(elem, e) for e in _pg_array(s) if e is not None)
    if pg_type(t).endswith("[]"):  # list or set of a scalar
        elem = t.args[0]
        return lambda s: _collection([None if e is None else serialize(elem, e)
                                      for e in _pg_array(s)])  # fmt: skip
    return lambda s: _from_json(t, orjson.loads(s))


def _int(size: int) -> Callable[[str], bytes]:
    return lambda s: int(s).to_bytes(size, "big", signed=True)


def _varint(n: int) -> bytes:
    """`BigInteger.toByteArray`: minimal two's complement."""
    return n.to_bytes((n if n >= 0 else ~n).bit_length() // 8 + 1, "big", signed=True)


def _decimal(s: str) -> bytes:
    sign, digits, exp = Decimal(s).as_tuple()
    assert isinstance(exp, int)
    unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    return (-exp).to_bytes(4, "big", signed=True) + _varint(unscaled)


def _timestamp(s: str) -> bytes:
    dt = datetime.fromisoformat(s.strip().replace(" ", "T").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return ((dt - _EPOCH) // _ONE_MS).to_bytes(8, "big", signed=True)


def _date(s: str) -> bytes:
    days = (date.fromisoformat(s.strip()) - date(1970, 1, 1)).days
    return (days + 2**31).to_bytes(4, "big")  # `SimpleDateType`: unsigned, epoch at 2^31


def _time(s: str) -> bytes:
    t = time.fromisoformat(s.strip())
    nanos = ((t.hour * 60 + t.minute) * 60 + t.second) * 10**9 + t.microsecond * 1000
    return nanos.to_bytes(8, "big", signed=True)


def _uvint(v: int) -> bytes:
    """`VIntCoding.writeUnsignedVInt`: the length in the first byte's leading one bits."""
    size = (639 - (64 - (v | 1).bit_length()) * 9) >> 6
    if size == 1:
        return bytes([v])
    out = bytearray(v.to_bytes(8, "big")[8 - size :] if size < 9 else b"\0" + v.to_bytes(8, "big"))
    out[0] |= ~(0xFF >> (size - 1)) & 0xFF
    return bytes(out)


def _vint(n: int) -> bytes:
    return _uvint(((n << 1) ^ (n >> 63)) & _U64)  # zigzag, as `VIntCoding.writeVInt`


def _duration(s: str) -> bytes:
    """`DurationSerializer`: months, days, nanoseconds as signed vints."""
    parts = s.split()
    fields = {"months": 0, "days": 0, "microseconds": 0}
    if len(parts) % 2 or any(u not in fields for u in parts[1::2]):
        return s.encode()  # a form the connector does not send; ordered by its text
    for v, unit in zip(parts[::2], parts[1::2], strict=True):
        fields[unit] = int(v)
    return b"".join(
        _vint(v) for v in (fields["months"], fields["days"], fields["microseconds"] * 1000)
    )


def _inet(s: str) -> bytes:
    ip = ip_address(s.split("/")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # Java reads ::ffff:a.b.c.d as an IPv4 address
    return (mapped or ip).packed


_SCALAR: dict[str, Callable[[str], bytes]] = {
    "text": str.encode,
    "ascii": str.encode,
    "varchar": str.encode,
    **{n: _int(size) for n, size in _INT_BYTES.items()},
    "varint": lambda s: _varint(int(Decimal(s))),
    "decimal": _decimal,
    "float": lambda s: struct.pack(">f", float(s)),
    "double": lambda s: struct.pack(">d", float(s)),
    "boolean": lambda s: b"\x01" if s in ("true", "t") else b"\x00",
    "uuid": lambda s: uuid.UUID(s).bytes,
    "timeuuid": lambda s: uuid.UUID(s).bytes,
    "timestamp": _timestamp,
    "date": _date,
    "time": _time,
    "duration": _duration,
    "inet": _inet,
    "blob": lambda s: bytes.fromhex(s.strip().removeprefix("\\x")),
}


def _collection(items: list[bytes | None]) -> bytes:
    """`CollectionSerializer.pack`: a 4-byte count, then each value with a 4-byte length."""
    out = [len(items).to_bytes(4, "big")]
    for b in items:
        out.append(b"\xff\xff\xff\xff" if b is None else len(b).to_bytes(4, "big") + b)
    return b"".join(out)


def _scalar_text(v: Any) -> str:
    """A JSON scalar of a jsonb column (typemap._jsonable) back to PostgreSQL text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _from_json(t: CqlType, v: Any) -> bytes:
    n = t.name
    if n in SCALARS:
        return serialize(t, _scalar_text(v))
    if n in ("list", "set", "vector") and isinstance(v, list):
        elems = [None if x is None else _from_json(t.args[0], x) for x in v]
        return b"".join(e or b"" for e in elems) if n == "vector" else _collection(elems)
    if n == "map" and isinstance(v, dict):
        kt, vt = t.args
        keys = sorted(v, key=lambda k: order_key(kt, k))  # jsonb does not keep the map's order
        pairs: list[bytes | None] = []
        for k in keys:
            pairs += [serialize(kt, k), None if v[k] is None else _from_json(vt, v[k])]
        return len(keys).to_bytes(4, "big") + _collection(pairs)[4:]
    if n == "tuple" and isinstance(v, list):
        return b"".join(
            b"\xff\xff\xff\xff" if x is None else _len(_from_json(a, x))
            for a, x in zip(t.args, v, strict=False)
        )
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS)  # UDT: field types unknown


def _len(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def order_key(t: CqlType, text: str) -> Any:
    """The element order of a set or map key type (its comparator), for re-sorting map keys."""
    n = t.name
    if n in ("tinyint", "smallint", "int", "bigint", "varint", "counter"):
        return int(Decimal(text))
    if n in ("decimal", "float", "double"):
        return Decimal(text)
    if n in ("timestamp", "time"):
        return int.from_bytes(serialize(t, text), "big", signed=True)
    if n == "timeuuid":
        u = uuid.UUID(text)
        return u.time, u.bytes
    if n == "uuid":
        u = uuid.UUID(text)
        return u.version or 0, u.time if u.version == 1 else 0, u.bytes
    return serialize(t, text)


def _pg_array(s: str) -> list[str | None]:
    """Parse a one-dimensional PostgreSQL array literal (quoted or bare elements, NULL)."""
    s = s.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError(f"not an array literal: {s[:40]!r}")
    out: list[str | None] = []
    i, body = 0, s[1:-1]
    while i < len(body):
        if body[i] == '"':
            j, buf = i + 1, []
            while body[j] != '"':
                if body[j] == "\\":
                    j += 1
                buf.append(body[j])
                j += 1
            out.append("".join(buf))
            i = j + 2  # past the quote and the comma
        else:
            j = body.find(",", i)
            j = len(body) if j < 0 else j
            item = body[i:j].strip()
            out.append(None if item.upper() == "NULL" else item)
            i = j + 1
    return out


# -- reading a stored value back in a form `serialize` takes ---------------------------------
def canonical_sql(t: CqlType, expr: str) -> str:
    """SQL giving the PostgreSQL text `serialize` expects for the typed value `expr`.

    Independent of the session's TimeZone, DateStyle and IntervalStyle.
    """
    n = t.name
    if n == "timestamp":
        return f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+00:00'"
    if n == "date":
        return f"to_char({expr}, 'YYYY-MM-DD')"
    if n == "duration":
        return (
            f"(extract(year FROM {expr}) * 12 + extract(month FROM {expr}))::bigint || ' months ' "
            f"|| extract(day FROM {expr})::bigint || ' days ' || (extract(epoch FROM "
            f"{expr} - date_trunc('day', {expr})) * 1000000)::bigint || ' microseconds'"
        )
    if n == "inet":
        return f"host({expr})"
    if n == "blob":
        return f"'\\x' || encode({expr}, 'hex')"
    if n in SCALARS:
        return f"{expr}::text"
    if pg_type(t).endswith("[]"):
        inner = canonical_sql(t.args[0], "e")
        return (
            f"COALESCE((SELECT array_agg({inner} ORDER BY o) FROM unnest({expr}) "
            "WITH ORDINALITY AS u(e, o))::text, '{}')"
        )
    return f"{expr}::text"  # jsonb
