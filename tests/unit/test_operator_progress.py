"""The operator's progress signal: pending work without a finished pass is a stall."""

from __future__ import annotations

from cdc_operator.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_work_is_never_a_stall() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    clock.now += 10_000
    assert p.stalled() is None


def test_pending_work_without_any_pass_stalls_after_the_period() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    for i in range(25):
        p.observe("TableReplication", "ns", f"t{i}", f"p{i % 5}", (1, False))
    assert p.pending() == 5
    clock.now += 59
    assert p.stalled() is None
    clock.now += 2
    why = p.stalled()
    assert why is not None
    assert "5 pipelines wait" in why
    assert "never" in why


def test_a_pass_started_after_the_request_covers_it() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    p.observe("CdcPipeline", "ns", "a", "a", (1, False))
    started = p.started()
    clock.now += 1
    p.finished("ns", "a", started)
    assert p.pending() == 0


def test_a_pass_started_before_the_request_does_not_cover_it() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    started = p.started()
    clock.now += 1
    p.observe("CdcPipeline", "ns", "a", "a", (2, False))
    p.finished("ns", "a", started)
    assert p.pending() == 1


def test_the_same_version_seen_again_is_not_new_work() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    p.observe("CdcPipeline", "ns", "a", "a", (1, False))
    p.finished("ns", "a", p.started())
    p.observe("CdcPipeline", "ns", "a", "a", (1, False))  # a status-only event
    assert p.pending() == 0
    p.observe("CdcPipeline", "ns", "a", "a", (2, False))
    assert p.pending() == 1


def test_recent_passes_elsewhere_mean_progress_not_a_stall() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    p.observe("CdcPipeline", "ns", "slow", "slow", (1, False))
    for _ in range(10):
        clock.now += 30
        p.finished("ns", "other", p.started())
    assert p.pending() == 1
    assert p.stalled() is None
    clock.now += 61
    assert p.stalled() is not None


def test_a_deleted_pipeline_is_no_longer_pending() -> None:
    clock = Clock()
    p = Progress(stall_after=60, clock=clock)
    p.observe("CdcPipeline", "ns", "a", "a", (1, False))
    p.forget("CdcPipeline", "ns", "a")
    clock.now += 1000
    assert p.stalled() is None
