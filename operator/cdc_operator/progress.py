"""Is the operator making progress? The signal behind its liveness probe and stall alert.

An operator can be alive (its event loop answers) and still reconcile nothing: Kopf's
per-object workers once all waited for an index that the next object could never enter
(see `handlers.configure`). What would have caught it: work is known to be pending, and no
reconcile pass has finished for a while. Work becomes known when the Kopf indexers see a
pipeline's or a table's spec change (indexers run before any handler, even while handlers are
held back); it is done when a pass over that pipeline finishes (successfully or not: a failing
pass is still progress, and reports itself through status and `cdc_operator_reconciles`).

`stalled()` is true when some request has waited longer than `stall_after` seconds and no
pass at all finished in that time. The liveness probe then fails (Kubernetes restarts the
Pod) and `cdc_operator_stalled` is 1 (alert `CdcOperatorStalled`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdc_operator import metrics as M

PipelineKey = tuple[str, str]


@dataclass
class Progress:
    stall_after: float = float(os.environ.get("CDC_OPERATOR_STALL_SECONDS", "300"))
    clock: Callable[[], float] = time.monotonic
    # The oldest request not yet covered by a pass that started after it.
    _requested: dict[PipelineKey, float] = field(default_factory=dict)
    _seen: dict[tuple[str, str, str], object] = field(default_factory=dict)
    _last_finished: float | None = None

    def observe(self, kind: str, namespace: str, name: str, pipeline: str, version: object) -> None:
        """An indexer saw an object; a new spec version means its pipeline needs a pass."""
        key = (kind, namespace, name)
        if self._seen.get(key) == version:
            return
        self._seen[key] = version
        self._requested.setdefault((namespace, pipeline), self.clock())
        self._publish()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._seen.pop((kind, namespace, name), None)
        if kind == "CdcPipeline":
            self._requested.pop((namespace, name), None)
            self._publish()

    def started(self) -> float:
        return self.clock()

    def finished(self, namespace: str, name: str, started: float) -> None:
        """A pass that started at `started` covers every request made before that."""
        now = self.clock()
        self._last_finished = now
        since = self._requested.get((namespace, name))
        if since is not None and since <= started:
            del self._requested[(namespace, name)]
        M.LAST_PASS.set_to_current_time()
        self._publish()

    def pending(self) -> int:
        return len(self._requested)

    def stalled(self) -> str | None:
        """Why the operator is stuck, or None while it makes progress."""
        if not self._requested:
            return None
        now = self.clock()
        oldest = min(self._requested.values())
        if now - oldest < self.stall_after:
            return None
        if self._last_finished is not None and now - self._last_finished < self.stall_after:
            return None
        last = "never" if self._last_finished is None else f"{now - self._last_finished:.0f} s ago"
        return (
            f"{len(self._requested)} pipelines wait for a reconcile pass (the oldest for "
            f"{now - oldest:.0f} s); the last pass finished {last}"
        )

    def _publish(self) -> None:
        M.PENDING.set(len(self._requested))


PROGRESS = Progress()
M.STALLED.set_function(lambda: 1.0 if PROGRESS.stalled() else 0.0)
