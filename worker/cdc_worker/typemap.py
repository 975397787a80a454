"""CQL types → PostgreSQL types, and Debezium JSON values → PostgreSQL literals.

Every value is turned into the PostgreSQL text form of its target type here, in
one place, so the writer can COPY text and let PostgreSQL cast it. A value that
cannot be converted raises ValueError, which sends its event to the dead-letter
topic. Formats are those the Debezium Cassandra connector emits (see
docs/debezium-wire-format.md); numerics also accept the connector's string and
precise-struct modes so `decimal.handling.mode` never loses precision here.
"""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from ipaddress import ip_address
from typing import Any

import orjson

SCALARS: dict[str, str] = {
    "ascii": "text",
    "text": "text",
    "varchar": "text",
    "tinyint": "smallint",
    "smallint": "smallint",
    "int": "integer",
    "bigint": "bigint",
    "counter": "bigint",
    "varint": "numeric",
    "decimal": "numeric",
    "float": "real",
    "double": "double precision",
    "boolean": "boolean",
    "uuid": "uuid",
    "timeuuid": "uuid",
    "timestamp": "timestamptz",
    "date": "date",
    "time": "time",
    "duration": "interval",
    "inet": "inet",
    "blob": "bytea",
}

_INT_RANGES = {
    "tinyint": (-(2**7), 2**7 - 1),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "counter": (-(2**63), 2**63 - 1),
}
_EPOCH = date(1970, 1, 1)
# Cassandra's `date` is unsigned days with 2^31 as the epoch when it is not already re-based.
_DATE_CENTER = 2**31


@dataclass(frozen=True, slots=True)
class CqlType:
    """A parsed CQL type: `name` plus type arguments (`frozen` is dropped, noted in `frozen`)."""

    name: str
    args: tuple[CqlType, ...] = ()
    frozen: bool = False
    size: int | None = None  # vector<float, size>

    @property
    def is_collection(self) -> bool:
        return self.name in ("list", "set", "map")

    def __str__(self) -> str:
        if self.name == "vector":
            return f"vector<{self.args[0]}, {self.size}>"
        inner = f"<{', '.join(map(str, self.args))}>" if self.args else ""
        text = f"{self.name}{inner}"
        return f"frozen<{text}>" if self.frozen else text


def parse_cql_type(text: str) -> CqlType:
    tokens = re.findall(r"[A-Za-z0-9_.\"]+|[<>,]", text)
    pos = 0

    def parse() -> CqlType:
        nonlocal pos
        name = tokens[pos].strip('"').lower() if pos < len(tokens) else ""
        if not name or name in "<>,":
            raise ValueError(f"invalid CQL type {text!r}")
        pos += 1
        args: list[CqlType] = []
        size = None
        if pos < len(tokens) and tokens[pos] == "<":
            pos += 1
            while True:
                if name == "vector" and args and tokens[pos].isdigit():
                    size = int(tokens[pos])
                    pos += 1
                else:
                    args.append(parse())
                if pos >= len(tokens):
                    raise ValueError(f"invalid CQL type {text!r}")
                tok = tokens[pos]
                pos += 1
                if tok == ">":
                    break
                if tok != ",":
                    raise ValueError(f"invalid CQL type {text!r}")
        if name == "frozen":
            if len(args) != 1:
                raise ValueError(f"invalid CQL type {text!r}")
            a = args[0]
            return CqlType(a.name, a.args, True, a.size)
        return CqlType(name, tuple(args), False, size)

    result = parse()
    if pos != len(tokens):
        raise ValueError(f"invalid CQL type {text!r}")
    return result


def pg_type(t: CqlType) -> str:
    """The PostgreSQL column type for a CQL type."""
    if t.name in SCALARS:
        return SCALARS[t.name]
    if t.name in ("list", "set") and t.args[0].name in SCALARS:
        return SCALARS[t.args[0].name] + "[]"
    if t.name == "vector":
        return "real[]" if t.args and t.args[0].name == "float" else "double precision[]"
    return "jsonb"  # map, tuple, UDT, nested collections


def to_pg_text(t: CqlType, value: Any) -> str:
    """The PostgreSQL input form of a non-null Debezium value (raises ValueError)."""
    try:
        return _convert(t, value)
    except (ValueError, TypeError, ArithmeticError, InvalidOperation, KeyError) as e:
        raise ValueError(f"cannot convert {_short(value)} to {t} ({e})") from e


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def _convert(t: CqlType, v: Any) -> str:
    n = t.name
    if n in ("text", "ascii", "varchar"):
        if not isinstance(v, str):
            raise TypeError(f"expected a string, got {type(v).__name__}")
        if "\x00" in v:
            raise ValueError("PostgreSQL text cannot hold NUL characters")
        return v
    if n in _INT_RANGES:
        i = _integer(v)
        lo, hi = _INT_RANGES[n]
        if not lo <= i <= hi:
            raise ValueError(f"{i} out of range for {n}")
        return str(i)
    if n == "varint":
        return str(_integer(v))
    if n == "decimal":
        return _decimal(v)
    if n in ("float", "double"):
        return _float(v)
    if n == "boolean":
        if not isinstance(v, bool):
            raise TypeError("expected a boolean")
        return "true" if v else "false"
    if n in ("uuid", "timeuuid"):
        return str(uuid.UUID(str(v)))
    if n == "timestamp":
        ms = _integer(v) if not isinstance(v, str) else None
        if ms is None:
            return datetime.fromisoformat(str(v).replace("Z", "+00:00")).isoformat()
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat()
    if n == "date":
        return _date(v)
    if n == "time":
        return _time(v)
    if n == "duration":
        return _duration(v)
    if n == "inet":
        return str(ip_address(str(v).lstrip("/").split("/")[-1]))
    if n == "blob":
        return "\\x" + _bytes(v).hex()
    if n in ("list", "set", "vector"):
        if not isinstance(v, list):
            raise TypeError("expected a JSON array")
        if pg_type(t) == "jsonb":
            return orjson.dumps(_jsonable(t, v)).decode()
        elem = t.args[0]
        return "{" + ",".join(_array_elem(elem, x) for x in v) + "}"
    return orjson.dumps(_jsonable(t, v)).decode()


def _integer(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"{v} is not an integer")
        return int(v)
    if isinstance(v, str):
        return int(v.strip())
    raise TypeError(f"expected an integer, got {type(v).__name__}")


def _decimal(v: Any) -> str:
    if isinstance(v, dict):  # VariableScaleDecimal {scale, value: base64 two's complement}
        unscaled = int.from_bytes(base64.b64decode(v["value"]), "big", signed=True)
        d = Decimal(unscaled).scaleb(-int(v["scale"]))
    elif isinstance(v, bool):
        raise TypeError("expected a number, got a boolean")
    elif isinstance(v, int | float | str):
        d = Decimal(str(v).strip())
    else:
        raise TypeError(f"expected a number, got {type(v).__name__}")
    if not d.is_finite():
        raise ValueError(f"{d} cannot be stored in numeric")
    return format(d, "f")


def _float(v: Any) -> str:
    if isinstance(v, bool):
        raise TypeError("expected a number, got a boolean")
    if isinstance(v, (int | float, str)):
        f = float(v)
    else:
        raise TypeError(f"expected a number, got {type(v).__name__}")
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return repr(f)


def _date(v: Any) -> str:
    if isinstance(v, str):
        return date.fromisoformat(v).isoformat()
    days = _integer(v)
    if days >= 2**30:  # raw unsigned Cassandra form
        days -= _DATE_CENTER
    return (_EPOCH + timedelta(days=days)).isoformat()


def _time(v: Any) -> str:
    if isinstance(v, str):
        return v
    nanos = _integer(v)
    if not 0 <= nanos < 86_400 * 10**9:
        raise ValueError(f"{nanos} ns is not a time of day")
    secs, ns = divmod(nanos, 10**9)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{ns // 1000:06d}"


def _duration(v: Any) -> str:
    if isinstance(v, dict):
        months, days, nanos = int(v["months"]), int(v["days"]), int(v["nanos"])
        return f"{months} months {days} days {nanos // 1000} microseconds"
    if isinstance(v, int) and not isinstance(v, bool):
        # Debezium 3.x: one int64 of nanoseconds, months counted as 30 days (lossy upstream).
        return f"{v // 1000} microseconds"
    if isinstance(v, str):
        return v
    raise TypeError(f"expected a duration, got {type(v).__name__}")


def _bytes(v: Any) -> bytes:
    if isinstance(v, str):
        return base64.b64decode(v, validate=True)
    if isinstance(v, list):
        return bytes(v)
    raise TypeError(f"expected base64 bytes, got {type(v).__name__}")


def _array_elem(t: CqlType, v: Any) -> str:
    if v is None:
        return "NULL"
    s = _convert(t, v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _jsonable(t: CqlType, v: Any) -> Any:
    """JSON for jsonb columns: scalars keep their PostgreSQL text form unless JSON-native."""
    if v is None:
        return None
    n = t.name
    if n in ("list", "set", "vector"):
        return [_jsonable(t.args[0], x) for x in v]
    if n == "map":
        kt, vt = t.args
        items = v.items() if isinstance(v, dict) else ((e["key"], e["value"]) for e in v)
        return {_json_key(kt, k): _jsonable(vt, x) for k, x in items}
    if n == "tuple":
        if isinstance(v, dict):
            v = [v[f"field{i + 1}"] for i in range(len(t.args))]
        return [_jsonable(a, x) for a, x in zip(t.args, v, strict=True)]
    if n in SCALARS:
        if n in ("int", "bigint", "smallint", "tinyint", "counter", "boolean"):
            return _integer(v) if n != "boolean" else bool(v)
        if n in ("float", "double") and isinstance(v, int | float) and math.isfinite(v):
            return float(v)
        return _convert(t, v)
    if isinstance(v, dict):  # UDT: field types are not known here, keep the connector's JSON
        return v
    raise TypeError(f"unexpected value for {t}")


def _json_key(t: CqlType, k: Any) -> str:
    return k if isinstance(k, str) and t.name in ("text", "ascii", "varchar") else _convert(t, k)


def converter(t: CqlType) -> Callable[[Any], str]:
    """A converter specialised for one column type (the decoder's hot path).

    Common scalars get a direct check; every other type, and any value the fast
    check does not accept as is, goes through `to_pg_text`, so the results and
    errors are the same as the general path.
    """
    n = t.name
    slow = partial(to_pg_text, t)
    if n in ("text", "ascii", "varchar"):

        def text(v: Any) -> str:
            if type(v) is str and "\x00" not in v:
                return v
            return slow(v)

        return text
    if n in _INT_RANGES:
        lo, hi = _INT_RANGES[n]

        def integer(v: Any) -> str:
            if type(v) is int and lo <= v <= hi:
                return str(v)
            return slow(v)

        return integer
    if n == "double":

        def double(v: Any) -> str:
            if type(v) is float and math.isfinite(v):
                return repr(v)
            return slow(v)

        return double
    if n == "boolean":

        def boolean(v: Any) -> str:
            if v is True:
                return "true"
            if v is False:
                return "false"
            return slow(v)

        return boolean
    return slow
