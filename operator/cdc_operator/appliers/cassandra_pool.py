"""One long-lived Cassandra session per (cluster, credentials), shared by every pipeline.

A `Cluster.connect()` per reconcile pass cost a control connection, a schema fetch and a
reactor round trip each time, and every `shutdown()` raced the driver's process-wide event
loop (libev callbacks still running on freed connections: upstream PYTHON-578 and the scylla
driver's "segmentation fault in libev prepare_callback during shutdown"). Sessions are kept
per key, closed after `IDLE_SECONDS` unused or when a call through them fails, and never shut
down while a caller holds them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

IDLE_SECONDS = 300.0


@dataclass
class _Entry:
    cluster: Any
    session: Any
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    broken: bool = False


class SessionPool:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle = idle_seconds
        self._lock = threading.Lock()
        self._entries: dict[tuple[object, ...], _Entry] = {}

    @staticmethod
    def key(*parts: object, password: str | None = None) -> tuple[object, ...]:
        """A pool key; the password only as a digest (the key may show up in a debugger)."""
        digest = hashlib.sha256(password.encode()).hexdigest() if password else ""
        return (*parts, digest)

    @contextmanager
    def session(self, key: tuple[object, ...], make: Callable[[], Any]) -> Iterator[Any]:
        """A connected session for `key` (built by `make()` → Cluster when absent). A failure
        inside the block closes the session once its other users are done."""
        entry = self._acquire(key, make)
        try:
            yield entry.session
        except BaseException:
            entry.broken = True
            raise
        finally:
            self._release(key, entry)

    def _acquire(self, key: tuple[object, ...], make: Callable[[], Any]) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not entry.broken:
                entry.users += 1
                return entry
        cluster = make()
        try:
            session = cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise
        fresh = _Entry(cluster, session, users=1)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.broken:
                self._entries[key] = fresh
                return fresh
            entry.users += 1  # another thread connected meanwhile: keep theirs
        cluster.shutdown()
        return entry

    def _release(self, key: tuple[object, ...], entry: _Entry) -> None:
        closing: list[_Entry] = []
        with self._lock:
            entry.users -= 1
            entry.last_used = now = time.monotonic()
            if entry.broken and self._entries.get(key) is entry:
                del self._entries[key]
            if entry.broken and entry.users == 0:
                closing.append(entry)
            for k, e in list(self._entries.items()):
                if e.users == 0 and now - e.last_used > self.idle:
                    del self._entries[k]
                    closing.append(e)
        for e in closing:
            e.cluster.shutdown()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            e.cluster.shutdown()

    def __len__(self) -> int:
        return len(self._entries)
