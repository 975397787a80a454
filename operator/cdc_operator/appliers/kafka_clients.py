"""One long-lived Kafka AdminClient per (bootstrap servers, credentials), shared by passes.

A client per pass (and a Consumer per status refresh, just to compute lag) cost hundreds of
connections a minute with hundreds of pipelines. An AdminClient is thread-safe; clients whose
settings are no longer used by any pass are closed after `IDLE_SECONDS`.

Cluster metadata (every topic's partitions) is what lag needs to know which partitions to ask
about; fetching it cost as much as everything else in a status pass once a Kafka held thousands
of topics, so status passes share one copy per client for up to `METADATA_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka.admin import AdminClient

IDLE_SECONDS = 600.0
METADATA_SECONDS = 10.0
_lock = threading.Lock()
_clients: dict[tuple[tuple[str, str], ...], tuple[AdminClient, float]] = {}
_metadata: dict[int, tuple[Any, float]] = {}  # id(client) -> (metadata, fetched)


def admin(settings: dict[str, Any], timeout: float = 15) -> AdminClient:
    conf = {**settings, "socket.timeout.ms": int(timeout * 1000)}
    key = tuple(sorted((k, str(v)) for k, v in conf.items()))
    now = time.monotonic()
    with _lock:
        for k, (old, used) in list(_clients.items()):
            if now - used > IDLE_SECONDS and k != key:
                del _clients[k]  # librdkafka closes it when the last reference goes
                _metadata.pop(id(old), None)
        found = _clients.get(key)
        client = found[0] if found else AdminClient(conf)
        _clients[key] = (client, now)
        return client


def metadata(client: AdminClient, timeout: float, max_age: float = METADATA_SECONDS) -> Any:
    """The cluster's topics and partitions, shared by callers for up to `max_age` seconds
    (0: fetch now). Raises KafkaException when Kafka does not answer."""
    now = time.monotonic()
    with _lock:
        found = _metadata.get(id(client))
    if found is not None and now - found[1] < max_age:
        return found[0]
    meta = client.list_topics(timeout=timeout)
    with _lock:
        _metadata[id(client)] = (meta, time.monotonic())
    return meta


def stale(client: AdminClient) -> None:
    """Topics were deleted through `client`: the next reader fetches metadata (lag must not
    ask for a partition librdkafka no longer knows; see `topics.consumer_lag`)."""
    with _lock:
        _metadata.pop(id(client), None)


def forget(settings: dict[str, Any]) -> None:
    """Drop a client after an error that may have left it unusable (e.g. auth failure)."""
    with _lock:
        for k in [k for k in _clients if dict(k).get("bootstrap.servers")
                  == str(settings.get("bootstrap.servers"))]:  # fmt: skip
            _metadata.pop(id(_clients.pop(k)[0]), None)
