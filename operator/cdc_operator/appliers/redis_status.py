"""The Redis metadata plane as the operator sees it: pause flags and worker reports."""

from __future__ import annotations

import time
from typing import Any

import redis


def _client(url: str, password: str | None) -> redis.Redis:
    return redis.Redis.from_url(url, password=password, socket_timeout=2, socket_connect_timeout=2)


def set_paused(url: str, password: str | None, pipeline: str, paused: bool) -> None:
    key = f"cdc:{pipeline}:paused"
    c = _client(url, password)
    if paused:
        c.set(key, "1")
    else:
        c.delete(key)


def read_progress(
    url: str, password: str | None, pipeline: str, tables: list[str]
) -> dict[str, Any]:
    """Live workers, their summed lag, and per-table counters reported by the workers."""
    c = _client(url, password)
    workers = 0
    lag = 0
    now = time.time()
    for key in c.scan_iter(f"cdc:{pipeline}:worker:*"):
        hb = c.hgetall(key)
        if now - float(hb.get(b"ts", b"0")) < 30:
            workers += 1
            lag += int(hb.get(b"lagEvents", b"0"))
    not_ready: dict[str, int] = {}  # reason code naming the hop -> workers reporting it
    for key in c.scan_iter(f"cdc:{pipeline}:notready:*"):
        code = c.get(key)
        if code:
            not_ready[_text(code)] = not_ready.get(_text(code), 0) + 1
    per_table: dict[str, dict[str, Any]] = {}
    for t in tables:
        h = {(k.decode() if isinstance(k, bytes) else k): v
             for k, v in c.hgetall(f"cdc:{pipeline}:table:{t}").items()}  # fmt: skip
        if h:
            per_table[t] = {k: (_text(v) if k in TEXT_FIELDS else float(v)) for k, v in h.items()}
    return {"workers": workers, "lagEvents": lag, "tables": per_table, "notReady": not_ready}


TEXT_FIELDS = ("dataGap", "quarantined")


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
