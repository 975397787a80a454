"""Cassandra's serialized cell values, written for the tests without the worker's code.

Cassandra 5.0 breaks a tie between two cells of equal timestamp (and equal
liveness) by comparing these bytes unsigned (`Cells.resolveRegular`). Values are
plain Python: int, str, bytes, float, Decimal, bool, UUID, datetime/date/time,
IPv4Address/IPv6Address, (months, days, nanos) for a duration, list/tuple.
"""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, time
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

FIXED = {"tinyint": 1, "smallint": 2, "int": 4, "bigint": 8}


def varint(n: int) -> bytes:
    size = 1
    while not -(1 << (8 * size - 1)) <= n < (1 << (8 * size - 1)):
        size += 1
    return n.to_bytes(size, "big", signed=True)


def unsigned_vint(v: int) -> bytes:
    extra = 0
    while extra < 8 and v >= 1 << (7 * (extra + 1)):
        extra += 1
    if extra == 0:
        return bytes([v])
    if extra == 8:
        return b"\xff" + v.to_bytes(8, "big")
    raw = v.to_bytes(extra + 1, "big")
    return bytes([raw[0] | (0xFF << (8 - extra)) & 0xFF]) + raw[1:]


def vint(n: int) -> bytes:
    return unsigned_vint(2 * n if n >= 0 else -2 * n - 1)  # zigzag


def value_bytes(cql: str, v: Any) -> bytes:
    if cql in ("text", "ascii", "varchar"):
        return str(v).encode("utf-8")
    if cql in FIXED:
        return int(v).to_bytes(FIXED[cql], "big", signed=True)
    if cql == "varint":
        return varint(int(v))
    if cql == "decimal":
        t = Decimal(v).as_tuple()
        unscaled = int("".join(map(str, t.digits))) * (-1 if t.sign else 1)
        return struct.pack(">i", -int(t.exponent)) + varint(unscaled)
    if cql == "float":
        return struct.pack(">f", v)
    if cql == "double":
        return struct.pack(">d", v)
    if cql == "boolean":
        return b"\x01" if v else b"\x00"
    if cql in ("uuid", "timeuuid"):
        return UUID(str(v)).bytes
    if cql == "timestamp":  # signed milliseconds
        ms = (
            v
            if isinstance(v, int)
            else round((v - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
        )
        return struct.pack(">q", ms)
    if cql == "date":  # unsigned days, the epoch at 2^31
        return struct.pack(">I", (v - date(1970, 1, 1)).days + 2**31)
    if cql == "time":
        assert isinstance(v, time)
        return struct.pack(
            ">q", ((v.hour * 60 + v.minute) * 60 + v.second) * 10**9 + v.microsecond * 1000
        )
    if cql == "duration":
        return b"".join(vint(x) for x in v)
    if cql == "inet":
        assert isinstance(v, IPv4Address | IPv6Address)
        return v.packed
    if cql == "blob":
        return bytes(v)
    if cql.startswith(("list<", "set<")):
        inner = cql[cql.index("<") + 1 : -1]
        parts = [value_bytes(inner, x) for x in v]
        return struct.pack(">i", len(parts)) + b"".join(
            struct.pack(">i", len(p)) + p for p in parts
        )
    raise ValueError(f"no serialization for {cql} in the tests")
