"""A work queue of pipelines, the controller-runtime model, in plain asyncio.

Every reason to look at a pipeline (its own events, its tables' events, its workers becoming
ready, the periodic status refresh, a failed pass) is a request to *add its key*; a fixed number
of workers take keys and run one pass each. What that buys:

- De-duplication: a key waiting in the queue is there once, however often it is added; the
  requests merge (the strongest mode wins: a full pass covers a status refresh).
- One pass per key at a time: a key added while its pass runs is remembered (dirty) and queued
  again when the pass ends, so the change that arrived meanwhile is seen by a later pass, never
  lost and never processed concurrently.
- Failures requeue with per-key exponential backoff (`base * 2**failures`, capped), combined
  with a global token bucket so that many failing keys cannot hammer the API server or a
  dependency; a pass that succeeds forgets the key's failures.
- Delayed adds (`add_after`) keep one timer per key, the earliest: a periodic refresh scheduled
  by every pass does not multiply.
- Debounced adds (`add_debounced`) wait for a quiet moment (no new add for `quiet` s, at most
  `max_wait` s after the first): a pipeline applied with its ten tables by one `kubectl apply`
  arrives as eleven events over a fraction of a second, and is reconciled once, with all ten,
  instead of once per table (each of those passes rewrote the worker config and rolled the
  Deployment: a ReplicaSet per table, and a worker Pod restarted before it was ever ready).

Nothing here knows about Kubernetes; `process(key, mode)` does the work and tells the queue what
to do next by returning normally (done), returning a delay (refresh after it), or raising
(`Requeue`, or any exception: rate-limited retry).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class Mode(IntEnum):
    """What a pass must do, weakest first; merged requests keep the strongest."""

    STATUS = 0  # observe and write status only: no applies, no admin calls
    FULL = 1  # reconcile everything that changed
    REFRESH = 2  # FULL, and re-read credentials now (created, resumed, spec changed)


class Requeue(Exception):
    """Raised by `process`: retry the key with backoff (`after=None`), but not before
    `at_least` s (e.g. when the dependency that failed will not be probed before), or after
    `after` s."""

    def __init__(
        self, mode: Mode = Mode.FULL, after: float | None = None, at_least: float = 0.0
    ) -> None:
        super().__init__(f"requeue ({mode.name}, after {after})")
        self.mode, self.after, self.at_least = mode, after, at_least


@dataclass
class TokenBucket:
    """The global rate limit of retries: `rate` per second, bursts of `burst`."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens, self._last = float(self.burst), self.clock()

    def reserve(self) -> float:
        """Take a token; the delay until it is really available (0 when one is there)."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass
class Backoff:
    """Per-key exponential backoff: base, 2 base, 4 base, … up to `cap`."""

    base: float = 0.1
    cap: float = 60.0
    failures: dict[Hashable, int] = field(default_factory=dict)

    def next(self, key: Hashable) -> float:
        n = self.failures.get(key, 0)
        self.failures[key] = n + 1
        return float(min(self.cap, self.base * 2**n))

    def forget(self, key: Hashable) -> None:
        self.failures.pop(key, None)


Process = Callable[[K, Mode], Awaitable[float | None]]


class WorkQueue(Generic[K]):
    def __init__(
        self, process: Process[K], workers: int, *, backoff: Backoff | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:  # fmt: skip
        self.process = process
        self.workers = workers
        self.backoff = backoff or Backoff()
        self.bucket = bucket or TokenBucket(rate=20.0, burst=200)
        # Status passes first: they are short and only observe, and one waiting behind a burst
        # of full passes leaves a pipeline's Ready minutes behind its Deployment (measured with
        # 200 pipelines on kwok). A key is queued once, with the lane of its mode at that time.
        self._queue: asyncio.PriorityQueue[tuple[int, int, K]] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._pending: dict[K, Mode] = {}  # queued or dirty: the merged request
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._timer_modes: dict[K, Mode] = {}  # what the timer's add will ask (merged)
        self._debounce: dict[K, tuple[float, Mode]] = {}  # key -> (first add, merged mode)
        self._debounced_timers: set[K] = set()  # keys whose timer is a debounce
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- adding --------------------------------------------------------------------------

    def add(self, key: K, mode: Mode = Mode.FULL) -> None:
        """Queue `key` (once); while its pass runs, remember to run it again afterwards."""
        waiting = self._debounce.pop(key, None)
        if waiting is not None:  # this pass covers the debounced request too
            mode = max(mode, waiting[1])
            if key in self._debounced_timers:
                self._cancel_timer(key)
                mode = max(mode, self._timer_modes.pop(key, Mode.STATUS))
        known = key in self._pending
        self._pending[key] = max(mode, self._pending.get(key, Mode.STATUS))
        if known or key in self._processing:
            return
        self._put(key)

    def _put(self, key: K) -> None:
        lane = 0 if self._pending[key] is Mode.STATUS else 1
        self._queue.put_nowait((lane, next(self._seq), key))

    def add_after(self, key: K, delay: float, mode: Mode = Mode.STATUS) -> None:
        """Add `key` after `delay` s; an earlier timer already set for it wins."""
        if delay <= 0:
            self.add(key, mode)
            return
        loop = self._loop or asyncio.get_running_loop()
        due = loop.time() + delay
        self._timer_modes[key] = max(mode, self._timer_modes.get(key, Mode.STATUS))
        found = self._timers.get(key)
        if found is not None:
            if found[0] <= due:
                return
            found[1].cancel()
            self._debounced_timers.discard(key)
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def add_debounced(self, key: K, mode: Mode, quiet: float, max_wait: float) -> None:
        """Add `key` once no other debounced add came for `quiet` s (at most `max_wait` s after
        the first); requests meanwhile merge."""
        if quiet <= 0:
            self.add(key, mode)
            return
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        first, merged = self._debounce.get(key, (now, Mode.STATUS))
        merged = max(merged, mode)
        self._debounce[key] = (first, merged)
        due = min(now + quiet, first + max_wait)
        found = self._timers.get(key)
        if found is not None:
            if key not in self._debounced_timers and found[0] <= due:
                return  # a sooner retry or refresh runs first, and takes the request along
            found[1].cancel()
        self._debounced_timers.add(key)
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key: K, mode: Mode = Mode.FULL, at_least: float = 0.0) -> float:
        """Retry `key` after its backoff (or the global limit, or `at_least`: the latest)."""
        delay = max(self.backoff.next(key), self.bucket.reserve(), at_least)
        self._cancel_timer(key)  # the retry comes first; the pass reschedules its refresh
        self.add_after(key, delay, mode)
        return delay

    def forget(self, key: K) -> None:
        """The key's last pass succeeded: its next failure starts from the base delay."""
        self.backoff.forget(key)

    def drop(self, key: K) -> None:
        """The object is gone: no timer, no failures (a queued request finds nothing to do)."""
        self._cancel_timer(key)
        self._debounce.pop(key, None)
        self._timer_modes.pop(key, None)
        self.backoff.forget(key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self._debounced_timers.discard(key)
        self.add(key, self._timer_modes.pop(key, Mode.STATUS))

    def _cancel_timer(self, key: K) -> None:
        """(The requests it carried stay merged: the timer that replaces it carries them.)"""
        self._debounced_timers.discard(key)
        found = self._timers.pop(key, None)
        if found is not None:
            found[1].cancel()

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [self._loop.create_task(self._worker(), name=f"workqueue-{i}")
                       for i in range(self.workers)]  # fmt: skip

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def _get(self) -> tuple[K, Mode]:
        _, _, key = await self._queue.get()
        self._processing.add(key)
        return key, self._pending.pop(key)

    def _done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._pending:  # added while processed: once more
            self._put(key)

    async def _worker(self) -> None:
        while True:
            key, mode = await self._get()
            try:
                after = await self.process(key, mode)
            except asyncio.CancelledError:
                self._processing.discard(key)
                raise
            except Requeue as r:
                if r.after is None:
                    self.add_rate_limited(key, r.mode, r.at_least)
                else:
                    self.add_after(key, r.after, r.mode)
            except Exception:
                log.exception("pass over %s failed", key)
                self.add_rate_limited(key, Mode.FULL)
            else:
                self.forget(key)
                if after is not None:
                    self.add_after(key, after, Mode.STATUS)
            finally:
                self._done(key)

    # -- inspection ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._queue.qsize()

    def pending(self) -> dict[K, Mode]:
        """Keys waiting for a pass (queued, or added while processed), with their mode."""
        return dict(self._pending)

    def processing(self) -> set[K]:
        return set(self._processing)

    def scheduled(self, key: K) -> float | None:
        """Seconds until the key's timer fires, or None."""
        found = self._timers.get(key)
        if found is None or self._loop is None:
            return None
        return max(0.0, found[0] - self._loop.time())
