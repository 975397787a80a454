"""The operator's work queue (controller-runtime semantics) and its circuit breakers: pure
asyncio, no cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cdc_operator.breakers import Breakers, Deferred, Unavailable
from cdc_operator.workqueue import Backoff, Mode, Requeue, TokenBucket, WorkQueue

Key = tuple[str, str]
K1, K2 = ("ns", "a"), ("ns", "b")
# Timings below are multiples of S: at 1 they are tight enough to fail on a loaded machine (an
# event loop starved for 20 ms let a 20 ms timer fire before the check that it is pending).
S = 5.0


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


class Recorder:
    """A `process` that records calls and can be told to block or fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[Key, Mode]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Callable[[Key, int], BaseException | None] = lambda k, n: None
        self.active: set[Key] = set()
        self.overlap = False

    async def __call__(self, key: Key, mode: Mode) -> float | None:
        if key in self.active:
            self.overlap = True
        self.active.add(key)
        try:
            self.calls.append((key, mode))
            if self.gate is not None:
                await self.gate.wait()
            err = self.fail(key, sum(1 for k, _ in self.calls if k == key))
            if err is not None:
                raise err
            return None
        finally:
            self.active.discard(key)


async def settle(q: WorkQueue[Key], rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
    while len(q) or q.processing():
        await asyncio.sleep(0.001)


def test_adds_of_a_queued_key_collapse_into_one_pass_with_the_strongest_mode() -> None:
    async def main() -> None:
        rec = Recorder()
        q: WorkQueue[Key] = WorkQueue(rec, workers=2)
        for mode in (Mode.STATUS, Mode.FULL, Mode.STATUS, Mode.REFRESH, Mode.STATUS):
            q.add(K1, mode)
        q.add(K2, Mode.STATUS)
        q.start()
        await settle(q)
        await q.stop()
        assert sorted(rec.calls) == [(K1, Mode.REFRESH), (K2, Mode.STATUS)]

    run(main())


def test_a_key_added_while_processed_runs_once_more_afterwards_never_concurrently() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.gate = asyncio.Event()
        q: WorkQueue[Key] = WorkQueue(rec, workers=4)
        q.start()
        q.add(K1, Mode.STATUS)
        await asyncio.sleep(0.01)
        assert q.processing() == {K1}
        for _ in range(5):  # a burst of table events during the pass
            q.add(K1, Mode.FULL)
        await asyncio.sleep(0.01)
        assert rec.calls == [(K1, Mode.STATUS)]  # the other 3 workers did not take it
        rec.gate.set()
        await settle(q)
        await q.stop()
        assert rec.calls == [(K1, Mode.STATUS), (K1, Mode.FULL)]
        assert not rec.overlap

    run(main())


def test_failures_requeue_with_per_key_exponential_backoff_and_success_forgets() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.fail = lambda k, n: RuntimeError("down") if k == K1 and n <= 3 else None
        q: WorkQueue[Key] = WorkQueue(rec, workers=1, backoff=Backoff(0.01, 1.0))
        q.start()
        q.add(K1)
        q.add(K2)
        await asyncio.sleep(0.3)
        await q.stop()
        assert [m for k, m in rec.calls if k == K1] == [Mode.FULL] * 4  # 3 failures, 1 success
        assert [m for k, m in rec.calls if k == K2] == [Mode.FULL]  # not held up by K1
        assert q.backoff.failures == {}  # the success forgot K1's failures

    run(main())


def test_a_retry_waits_at_least_what_the_pass_asks() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.fail = lambda k, n: Requeue(Mode.FULL, at_least=0.15 * S) if n == 1 else None
        q: WorkQueue[Key] = WorkQueue(rec, workers=1, backoff=Backoff(0.01, 1.0))
        q.start()
        q.add(K1)
        await asyncio.sleep(0.1 * S)
        assert len(rec.calls) == 1  # not after the 10 ms backoff
        await asyncio.sleep(0.15 * S)
        await q.stop()
        assert len(rec.calls) == 2

    run(main())


def test_backoff_doubles_per_key_up_to_its_cap() -> None:
    b = Backoff(0.5, 4.0)
    assert [b.next(K1) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.next(K2) == 0.5  # per key
    b.forget(K1)
    assert b.next(K1) == 0.5


def test_the_global_bucket_limits_retries_beyond_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(5)] == [0, 0, 0, pytest.approx(0.1),
                                                     pytest.approx(0.2)]  # fmt: skip
    now[0] = 10.0
    assert bucket.reserve() == 0


def test_requeue_after_and_the_periodic_refresh_keep_one_timer_per_key() -> None:
    async def main() -> None:
        rec = Recorder()

        async def process(key: Key, mode: Mode) -> float | None:
            await rec(key, mode)
            return 0.05 * S  # a refresh after 50 ms * S

        q: WorkQueue[Key] = WorkQueue(process, workers=1)
        q.start()
        q.add(K1)
        for _ in range(5):
            q.add_after(K1, 0.02 * S, Mode.STATUS)  # later timers do not multiply
        await asyncio.sleep(0.005)
        assert q.scheduled(K1) is not None
        await asyncio.sleep(0.2 * S)
        await q.stop()
        # the add, then the timer, then refreshes: ~ 5 passes, not 5 x that
        assert 3 <= len(rec.calls) <= 7, rec.calls
        assert rec.calls[0] == (K1, Mode.FULL)
        assert all(m == Mode.STATUS for _, m in rec.calls[1:])

    run(main())


def test_a_burst_of_debounced_adds_is_one_pass_after_a_quiet_moment() -> None:
    async def main() -> None:
        rec = Recorder()
        q: WorkQueue[Key] = WorkQueue(rec, workers=2)
        q.start()
        q.add_debounced(K1, Mode.REFRESH, quiet=0.05 * S, max_wait=1.0 * S)  # the pipeline
        for _ in range(10):  # its tables, 10 ms * S apart
            await asyncio.sleep(0.01 * S)
            q.add_debounced(K1, Mode.FULL, quiet=0.05 * S, max_wait=1.0 * S)
        assert rec.calls == []
        await asyncio.sleep(0.1 * S)
        assert rec.calls == [(K1, Mode.REFRESH)]  # one pass, the strongest mode
        # A steady trickle is still served after max_wait.
        for _ in range(12):
            q.add_debounced(K2, Mode.FULL, quiet=0.05 * S, max_wait=0.1 * S)
            await asyncio.sleep(0.02 * S)
        assert (K2, Mode.FULL) in rec.calls
        # An immediate add takes a waiting debounced request along (one pass, not two).
        q.add_debounced(K1, Mode.REFRESH, quiet=0.05 * S, max_wait=1.0 * S)
        q.add(K1, Mode.STATUS)
        await asyncio.sleep(0.1 * S)
        await q.stop()
        assert rec.calls.count((K1, Mode.REFRESH)) == 2
        assert (K1, Mode.STATUS) not in rec.calls

    run(main())


def test_requeue_signal_keeps_the_mode_and_drop_cancels_the_timer() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.fail = lambda k, n: Requeue(Mode.STATUS, after=0.02 * S) if n == 1 else None
        q: WorkQueue[Key] = WorkQueue(rec, workers=1)
        q.start()
        q.add(K1, Mode.REFRESH)
        await asyncio.sleep(0.1 * S)
        assert rec.calls == [(K1, Mode.REFRESH), (K1, Mode.STATUS)]
        q.add_after(K1, 0.02 * S)
        q.drop(K1)
        await asyncio.sleep(0.05 * S)
        await q.stop()
        assert len(rec.calls) == 2

    run(main())


def test_no_workers_means_no_passes() -> None:
    async def main() -> None:
        rec = Recorder()
        q: WorkQueue[Key] = WorkQueue(rec, workers=0)
        q.start()
        q.add(K1)
        await asyncio.sleep(0.02)
        await q.stop()
        assert rec.calls == []
        assert q.pending() == {K1: Mode.FULL}

    run(main())


# -- circuit breakers --------------------------------------------------------------------

KAFKA = ("Kafka", "127.0.0.1:1", "")
OTHER = ("Kafka", "127.0.0.1:9092", "")


def test_a_down_dependency_fails_fast_until_its_probe_is_due_and_others_are_untouched() -> None:
    async def main() -> None:
        now = [0.0]
        b = Breakers(base=1.0, cap=8.0, clock=lambda: now[0])

        async def refused() -> None:
            raise ConnectionError("refused")

        async def ok() -> str:
            return "ok"

        def outage(e: BaseException) -> str | None:
            return "refused" if isinstance(e, ConnectionError) else None

        with pytest.raises(Unavailable) as err:
            await b.call(KAFKA, refused, 1, outage)
        assert err.value.reason == "KafkaUnavailable"
        assert "127.0.0.1:1" in str(err.value)
        calls = 0

        async def counted() -> str:
            nonlocal calls
            calls += 1
            return "ok"

        for _ in range(10):  # fail fast: the call is not made
            with pytest.raises(Unavailable):
                await b.call(KAFKA, counted, 1, outage)
        assert calls == 0
        assert await b.call(OTHER, ok, 1, outage) == "ok"  # another Kafka is unaffected
        now[0] = 1.0  # the probe is due: it fails again, next one after 2 s, then 4, 8, 8
        with pytest.raises(Unavailable):
            await b.call(KAFKA, refused, 1, outage)
        assert b.down(KAFKA) is not None
        assert b.retry_in(KAFKA) == 2.0  # when a pass failing fast should come back
        assert b.retry_in(OTHER) == 0.0
        now[0] = 2.9
        assert b.down(KAFKA) is not None
        now[0] = 3.0
        assert b.down(KAFKA) is None
        assert await b.call(KAFKA, counted, 1, outage) == "ok"
        assert calls == 1
        assert b.down(KAFKA) is None  # healthy again: concurrent calls go through

    run(main())


def test_a_timeout_opens_the_breaker_and_callers_defer_while_a_probe_runs() -> None:
    async def main() -> None:
        b = Breakers(base=0.05)
        release = asyncio.Event()

        async def hangs() -> None:
            await release.wait()

        probe = asyncio.ensure_future(b.call(KAFKA, hangs, 0.05))
        await asyncio.sleep(0.01)
        assert b.probing(KAFKA)
        with pytest.raises(Deferred):  # a second pass does not wait out the same timeout
            await b.call(KAFKA, hangs, 0.05)
        woken: list[str] = []
        b.park(KAFKA, lambda: woken.append("again"))
        with pytest.raises(Unavailable, match=r"no answer within 0\.05 s"):
            await probe
        assert woken == ["again"]
        assert not b.probing(KAFKA)

    run(main())


def test_an_error_that_is_not_an_outage_leaves_the_breaker_closed() -> None:
    async def main() -> None:
        b = Breakers()

        async def refused() -> None:
            raise PermissionError("denied")

        with pytest.raises(PermissionError):
            await b.call(KAFKA, refused, 1, lambda e: None)
        assert b.down(KAFKA) is None
        assert not b.probing(KAFKA)

    run(main())


def test_status_passes_go_before_queued_full_passes() -> None:
    async def main() -> None:
        rec = Recorder()
        q: WorkQueue[Key] = WorkQueue(rec, workers=1)
        fulls = [("ns", f"f{i}") for i in range(5)]
        for k in fulls:
            q.add(k, Mode.FULL)
        q.add(K1, Mode.STATUS)
        q.add(K2, Mode.STATUS)
        q.add(K2, Mode.FULL)  # upgraded while queued: keeps its place, runs as FULL
        q.start()
        await settle(q)
        await q.stop()
        assert rec.calls == [(K1, Mode.STATUS), (K2, Mode.FULL), *((k, Mode.FULL) for k in fulls)]

    run(main())
