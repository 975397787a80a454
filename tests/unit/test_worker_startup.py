"""The worker's start timeline: phases counted from the process's exec, logged once."""

from __future__ import annotations

import time

from cdc_worker.startup import Timeline, process_age


def test_process_age_counts_from_exec() -> None:
    age = process_age()
    assert 0 < age < 24 * 3600  # this test process started a moment ago, not at boot


def test_marks_keep_their_first_time_and_ready_logs_once() -> None:
    t = Timeline()
    t.mark("imported")
    first = t.marks["imported"]
    time.sleep(0.02)
    t.mark("imported")
    assert t.marks["imported"] == first
    assert first >= 0
    t.ready()
    answered = t.marks["first_ready_answer"]
    assert answered >= first
    assert t.done
    t.ready()
    assert t.marks["first_ready_answer"] == answered
