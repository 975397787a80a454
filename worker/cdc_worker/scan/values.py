"""Cassandra driver values → what the worker writes, and the digest's canonical form.

Repair and backfill must write exactly what the stream would have written, so a
driver value is first turned into the JSON form the Debezium connector emits
for it (timestamp as epoch ms, blob as base64, duration as nanoseconds with a
month as 30 days, ...) and then goes through the worker's own `to_pg_text`:
one conversion path, no second opinion on formats.

The digest compares *values*, not text: PostgreSQL prints a timestamptz, a
real or an inet in its own way, so each type has a canonical form that both
sides can compute cheaply — Python from the driver value here, SQL from the
stored value in `digest.canon_sql` (epoch µs for time types, IEEE-754 bits for
floats, hex for bytes, `host()` for inet, jsonb's own text for jsonb).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from ipaddress import ip_address
from typing import Any

import orjson

from cdc_worker.typemap import CqlType, pg_type, to_pg_text

_EPOCH_DT = datetime(1970, 1, 1)
_EPOCH_D = date(1970, 1, 1)
_US = timedelta(microseconds=1)
_TIME_TYPES = ("timestamp", "time", "duration")


def to_json(t: CqlType, v: Any) -> Any:
    """The connector's JSON form of a (non-null) driver value."""
    n = t.name
    if n == "timestamp":
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        return (v - _EPOCH_DT) // timedelta(milliseconds=1)
    if n == "date":
        return _days(v)
    if n == "time":
        return _nanos(v)
    if n == "duration":
        return (v.months * 30 + v.days) * 86_400 * 10**9 + v.nanoseconds
    if n == "blob":
        return base64.b64encode(bytes(v)).decode()
    if n in ("uuid", "timeuuid", "inet"):
        return str(v)
    if n == "decimal":
        return format(v, "f")
    if n in ("list", "set", "vector"):
        return [to_json(t.args[0], x) for x in v]
    if n == "map":
        kt, vt = t.args
        return [{"key": to_json(kt, k), "value": to_json(vt, x)} for k, x in v.items()]
    if n == "tuple":
        return [None if x is None else to_json(a, x) for a, x in zip(t.args, v, strict=False)]
    if hasattr(v, "_asdict"):  # UDT (field types are not in the schema): plain JSON values
        return {k: _plain(x) for k, x in v._asdict().items()}
    return v


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if hasattr(v, "_asdict"):
        return {k: _plain(x) for k, x in v._asdict().items()}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_plain(x) for x in v]
    return str(v)


def _days(v: Any) -> int:
    if hasattr(v, "days_from_epoch"):
        return int(v.days_from_epoch)
    return int((v - _EPOCH_D).days)


def _nanos(v: Any) -> int:
    if hasattr(v, "nanosecond_time"):
        return int(v.nanosecond_time)
    return int(((v.hour * 60 + v.minute) * 60 + v.second) * 10**9 + v.microsecond * 1000)


def pg_text(t: CqlType, v: Any) -> str | None:
    """What the worker stores for this value (PostgreSQL input text), None for null/empty."""
    if v is None or (t.is_collection and len(v) == 0):
        return None
    return to_pg_text(t, to_json(t, v))


def canon(t: CqlType, v: Any) -> str | None:
    """The digest's canonical text of a driver value (see `digest.canon_sql`)."""
    if v is None:
        return None
    n = t.name
    if n in ("text", "ascii", "varchar"):
        return str(v)
    if n in ("timestamp", "time", "duration"):
        return str(_micros(n, v))
    if n == "date":
        return str(_days(v))
    if n in ("float", "double"):
        return struct.pack(">d", float(v)).hex()
    if n == "blob":
        return bytes(v).hex()
    if n == "inet":
        return str(ip_address(str(v)))
    if n == "boolean":
        return "true" if v else "false"
    if n == "decimal":
        return format(v, "f")
    if n in ("list", "set", "vector") and pg_type(t) != "jsonb":
        if len(v) == 0:
            return None
        return "".join(_lp(canon(t.args[0], x)) for x in v)
    if pg_type(t) == "jsonb":
        if t.is_collection and len(v) == 0:
            return None
        return jsonb_text(orjson.loads(to_pg_text(t, to_json(t, v))))
    return str(v)  # integers, varint, uuid, timeuuid


def _micros(n: str, v: Any) -> int:
    if n == "timestamp":
        return int(to_json(CqlType("timestamp"), v)) * 1000
    if n == "time":
        return _nanos(v) // 1000
    return int(to_json(CqlType("duration"), v)) // 1000


def _lp(s: str | None) -> str:
    """Length-prefixed field: no separator or escaping can collide."""
    return "~" if s is None else f"{len(s)}:{s}"


def jsonb_text(v: Any) -> str:
    """PostgreSQL's jsonb output: keys by (byte length, bytes), `, ` and `: `, numeric numbers."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format(Decimal(orjson.dumps(v).decode()), "f")
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(jsonb_text(x) for x in v) + "]"
    items = sorted(v.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
    return "{" + ", ".join(f"{_json_str(k)}: {jsonb_text(x)}" for k, x in items) + "}"


_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
             "\t": "\\t"}  # fmt: skip


def _json_str(s: str) -> str:
    out = []
    for ch in s:
        e = _JSON_ESC.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# -- tokens of rows read from PostgreSQL ------------------------------------------------------


def serialize_pg(t: CqlType, v: Any) -> bytes:
    """Cassandra's serialized bytes of a partition-key value read back from PostgreSQL."""
    from cassandra import cqltypes

    n = t.name
    if n not in cqltypes._cqltypes or t.is_collection or n in ("tuple", "frozen"):
        raise ValueError(f"partition key of type {t} is not supported by the scanner")
    if n == "inet":
        v = str(v).split("/")[0]
    elif n == "time" and isinstance(v, time):
        v = _nanos(v)
    elif n == "date" and isinstance(v, date):
        v = (v - _EPOCH_D).days + 2**31  # SimpleDateType takes the unsigned, epoch-centred day
    elif n == "timestamp" and isinstance(v, datetime):
        v = (v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    elif n in ("float", "double"):
        v = float(v)
    serialized: bytes = cqltypes._cqltypes[n].serialize(v, 5)
    return serialized


def routing_key(parts: list[bytes]) -> bytes:
    """One component as is; several as Cassandra's CompositeType: (u16 len, bytes, 0) each."""
    if len(parts) == 1:
        return parts[0]
    return b"".join(struct.pack(">H", len(p)) + p + b"\x00" for p in parts)


def murmur3_token(key: bytes) -> int:
    """Murmur3Partitioner.getToken: the driver's murmur3 (C), Long.MIN_VALUE normalised."""
    from cassandra.murmur3 import murmur3

    tok = int(murmur3(key))
    return 2**63 - 1 if tok == -(2**63) else tok


def is_time_type(t: CqlType) -> bool:
    return t.name in _TIME_TYPES


# -- per-column converters (the scan's hot path) -----------------------------------------------
# `pg_text`/`canon` dispatch on the type name for every cell. A scan converts millions of cells
# of a handful of columns, so each column gets its converter once: the common scalar types
# (every column of a typical table) by a direct expression that returns exactly what the
# generic function would for a driver value of that type, anything else by the generic one.

_INT_NAMES = ("tinyint", "smallint", "int", "bigint", "varint")
_TEXT_NAMES = ("text", "ascii", "varchar")


def _pg_text_str(v: Any) -> str | None:
    if v is None:
        return None
    if "\x00" in v:  # rejected by to_pg_text: let it raise its own error
        return to_pg_text(CqlType("text"), v)
    return str(v)


def _int_text(v: Any) -> str | None:
    return None if v is None else str(v)


def _float_text(v: Any) -> str | None:
    if v is None:
        return None
    f = float(v)
    return repr(f) if math.isfinite(f) else to_pg_text(CqlType("double"), f)


def _bool_text(v: Any) -> str | None:
    return None if v is None else ("true" if v else "false")


def pg_text_fn(t: CqlType) -> Callable[[Any], str | None]:
    """`lambda v: pg_text(t, v)`, specialised for the common scalar types."""
    n = t.name
    if t.args or t.is_collection:
        return lambda v: pg_text(t, v)
    if n in _TEXT_NAMES:
        return _pg_text_str
    if n in _INT_NAMES:
        return _int_text
    if n in ("float", "double"):
        return _float_text
    if n == "boolean":
        return _bool_text
    return lambda v: pg_text(t, v)


def _canon_float(v: Any) -> str | None:
    return None if v is None else _pack_d(float(v)).hex()


_pack_d = struct.Struct(">d").pack


def canon_fn(t: CqlType) -> Callable[[Any], str | None]:
    """`lambda v: canon(t, v)`, specialised for the common scalar types."""
    n = t.name
    if t.args or t.is_collection:
        return lambda v: canon(t, v)
    if n in _TEXT_NAMES or n in _INT_NAMES:
        return _int_text  # str(v)
    if n in ("float", "double"):
        return _canon_float
    if n == "boolean":
        return _bool_text
    return lambda v: canon(t, v)
