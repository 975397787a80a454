"""Redis, the live metadata plane: heartbeats, per-table counters and pause flags.

Nothing here is needed to replicate correctly. Every call swallows Redis errors
(logging them at most once a minute), so a Redis outage only stops reporting;
pause flags then keep their last known value.

Keys (all under `cdc:<pipeline>:`):
- `worker:<id>` hash, TTL 30 s: heartbeat (`ts`, `partitions`, `applied`, `lagEvents`)
- `notready:<id>`, TTL 30 s: why the worker is not ready, as a code naming the hop (hops.py)
- `table:<keyspace>.<table>` hash, TTL 1 day: `applied`, `lastEventTs` (µs), `lagSeconds`,
  `dataGap` (text, while an unacknowledged gap exists)
- `paused` / `table:<keyspace>.<table>:paused`: present and not "0" means paused
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:  # imported only with a client (connect.redis_client): ~0.1 s of start
    import redis

log = structlog.get_logger("cdc_worker.status")

HEARTBEAT_TTL = 30
TABLE_TTL = 86_400


def pipeline_key(pipeline: str, *parts: str) -> str:
    return ":".join(["cdc", pipeline, *parts])


class Status:
    def __init__(self, client: redis.Redis | None, pipeline: str, worker_id: str) -> None:
        self.client = client
        # What a Redis call may raise: redis is imported only when there is a client.
        self._errors: type[Exception] | tuple[()] = ()
        if client is not None:
            import redis

            self._errors = redis.RedisError
        self.pipeline = pipeline
        self.worker_id = worker_id
        self._last_error = 0.0
        self._paused: dict[str, bool] = {}

    def _failed(self, e: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:
            log.warning("redis_unavailable", error=type(e).__name__)
            self._last_error = now

    def heartbeat(self, partitions: int, applied: int, lag_events: int) -> None:
        if self.client is None:
            return
        key = pipeline_key(self.pipeline, "worker", self.worker_id)
        try:
            pipe = self.client.pipeline()
            pipe.hset(key, mapping={"ts": time.time(), "partitions": partitions,
                                    "applied": applied, "lagEvents": lag_events})  # fmt: skip
            pipe.expire(key, HEARTBEAT_TTL)
            pipe.execute()
        except self._errors as e:
            self._failed(e)

    def not_ready(self, code: str | None) -> None:
        """`notready:<id>` = a reason code naming the hop (hops.py) while this worker is not
        ready, even before it could reach PostgreSQL or Kafka; gone when it is."""
        if self.client is None:
            return
        key = pipeline_key(self.pipeline, "notready", self.worker_id)
        try:
            if code is None:
                self.client.delete(key)
            else:
                self.client.set(key, code, ex=HEARTBEAT_TTL)
        except self._errors as e:
            self._failed(e)

    def table_progress(self, table: str, applied: int, last_event_us: int, lag_s: float) -> None:
        if self.client is None:
            return
        key = pipeline_key(self.pipeline, "table", table)
        try:
            pipe = self.client.pipeline()
            pipe.hincrby(key, "applied", applied)
            pipe.hset(key, mapping={"lastEventTs": last_event_us, "lagSeconds": round(lag_s, 3)})
            pipe.expire(key, TABLE_TTL)
            pipe.execute()
        except self._errors as e:
            self._failed(e)

    def table_quarantine(self, table: str, why: str | None) -> None:
        """`quarantined` on the table's hash while this worker cannot serve it."""
        if self.client is None:
            return
        key = pipeline_key(self.pipeline, "table", table)
        try:
            if why is None:
                self.client.hdel(key, "quarantined")
                return
            self.client.hset(key, "quarantined", why)
            self.client.expire(key, TABLE_TTL)
        except self._errors as e:
            self._failed(e)

    def table_gap(self, table: str, gap: str | None) -> None:
        """`dataGap` on the table's hash while an unacknowledged gap exists."""
        if self.client is None:
            return
        key = pipeline_key(self.pipeline, "table", table)
        try:
            if gap:
                self.client.hset(key, "dataGap", gap)
                self.client.expire(key, TABLE_TTL)
            else:
                self.client.hdel(key, "dataGap")
        except self._errors as e:
            self._failed(e)

    def paused(self, tables: Iterable[str]) -> dict[str, bool]:
        """Pause state per table (the pipeline flag pauses all); last known on Redis errors."""
        names = list(tables)
        if self.client is None:
            return dict.fromkeys(names, False)
        keys = [pipeline_key(self.pipeline, "paused")]
        keys += [pipeline_key(self.pipeline, "table", t, "paused") for t in names]
        try:
            values = self.client.mget(keys)
        except self._errors as e:
            self._failed(e)
            return {t: self._paused.get(t, False) for t in names}
        flags = [v is not None and v not in (b"0", b"false", b"") for v in values]
        self._paused = {t: flags[0] or flag for t, flag in zip(names, flags[1:], strict=True)}
        return dict(self._paused)
