"""One long-lived Kafka AdminClient per (bootstrap servers, credentials), shared by passes.

A client per pass (and a Consumer per status refresh, just to compute lag) cost hundreds of
connections a minute with hundreds of pipelines. An AdminClient is thread-safe; clients whose
settings are no longer used by any pass are closed after `IDLE_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka.admin import AdminClient

IDLE_SECONDS = 600.0
_lock = threading.Lock()
_clients: dict[tuple[tuple[str, str], ...], tuple[AdminClient, float]] = {}


def admin(settings: dict[str, Any], timeout: float = 15) -> AdminClient:
    conf = {**settings, "socket.timeout.ms": int(timeout * 1000)}
    key = tuple(sorted((k, str(v)) for k, v in conf.items()))
    now = time.monotonic()
    with _lock:
        for k, (_, used) in list(_clients.items()):
            if now - used > IDLE_SECONDS and k != key:
                del _clients[k]  # librdkafka closes it when the last reference goes
        found = _clients.get(key)
        client = found[0] if found else AdminClient(conf)
        _clients[key] = (client, now)
        return client


def forget(settings: dict[str, Any]) -> None:
    """Drop a client after an error that may have left it unusable (e.g. auth failure)."""
    with _lock:
        for k in [k for k in _clients if dict(k).get("bootstrap.servers")
                  == str(settings.get("bootstrap.servers"))]:  # fmt: skip
            del _clients[k]
