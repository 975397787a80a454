"""Which of the chart's alerts fired and resolved during each fault of the chaos run.

A real Prometheus (tests/support/prometheus.py) scrapes the workers and the agents with the
chart's rules; a thread reads /api/v1/alerts every second and keeps, per alert and label set,
the spans during which it was firing. `during(t0, t1)` names the alerts that were firing at some
moment of [t0, t1] and whether each had resolved by the end of the run.

The rules' durations are scaled (`time_scale`, default 1/30: a `for: 5m` becomes 10 s) because a
fault here lasts tens of seconds, not the minutes production alerts wait for; thresholds on
counts and latencies are not scaled (see tests/support/prometheus.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.topology.chaos_rig import Pipeline


@dataclass
class Span:
    start: float
    end: float | None = None


@dataclass
class AlertWatch:
    time_scale: float = 1 / 30
    spans: dict[str, list[Span]] = field(default_factory=dict)
    prom: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pipeline: Pipeline | None = None

    ready_at: float | None = None
    error: str | None = None

    def start(self, pipeline: Pipeline) -> None:
        """Start Prometheus on a thread: its binary may still be building (`hack/stack tool
        prometheus` waits for the build), and the run must not wait for it. Faults injected
        before it scrapes say so in their row."""
        self._pipeline = pipeline
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from tests.support.prometheus import Prometheus  # the harness of issue #15.5

        assert self._pipeline is not None
        try:
            self.prom = Prometheus(self._targets(), labels={"namespace": self._pipeline.namespace},
                                   time_scale=self.time_scale)  # fmt: skip
            self.prom.start()
        except Exception as e:
            self.error = f"Prometheus did not start: {e}"[:500]
            return
        if self._stop.is_set():  # the run ended while the binary was being built
            self.prom.stop()
            return
        self.ready_at = time.time()
        self._watch()

    def _targets(self) -> dict[str, list[Any]]:
        assert self._pipeline is not None
        p = self._pipeline
        workers = [(f"127.0.0.1:{w.port}", {"pod": f"chaos-worker-{i}"})
                   for i, w in enumerate(p.workers)]  # fmt: skip
        agents = [u.removeprefix("http://") for u in p.env["CDC_AGENT_URLS"].split(",")]
        op = p.operator.metrics_target() if p.operator is not None else None
        return {"cdc-worker": workers, "cdc-agent": agents, "cdc-operator": [op] if op else []}

    def _key(self, alert: dict[str, Any]) -> str:
        labels = alert["labels"]
        keep = ("pipeline", "table", "pod", "instance", "keyspace")
        detail = ",".join(f"{k}={labels[k]}" for k in keep if k in labels)
        return f"{labels.get('alertname')}{{{detail}}}"

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                firing = {self._key(a) for a in self.prom.alerts() if a["state"] == "firing"}
            except Exception:
                self._stop.wait(1)
                continue
            now = time.time()
            for key in firing:
                spans = self.spans.setdefault(key, [])
                if not spans or spans[-1].end is not None:
                    spans.append(Span(now))
            for key, spans in self.spans.items():
                if key not in firing and spans and spans[-1].end is None:
                    spans[-1].end = now
            self._stop.wait(1)

    def during(self, t0: float, t1: float) -> dict[str, list[str]]:
        if self.ready_at is None or self.ready_at > t0:
            why = self.error or "Prometheus was not scraping yet when the fault began"
            return {"fired": [], "resolved": [], "note": [why]}
        fired, resolved = [], []
        for key, spans in sorted(self.spans.items()):
            hit = [s for s in spans if s.start <= t1 and (s.end is None or s.end >= t0)]
            if hit:
                fired.append(key)
                if hit[-1].end is not None:
                    resolved.append(f"{key} after {hit[-1].end - t0:.0f} s")
        return {"fired": fired, "resolved": resolved}

    def stop(self) -> None:
        self._stop.set()
        if self.prom is not None:
            self.prom.stop()
