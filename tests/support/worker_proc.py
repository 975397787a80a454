"""Run the real `cdc-worker` as a subprocess against the stack, and helpers around Kafka."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]


_PER_WORKER = 1500
_next: list[int] = []


def _band() -> tuple[int, int]:
    """This process's ports: below the kernel's ephemeral range, one band per xdist worker."""
    try:
        eph = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        eph = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    lo = eph - 8 * _PER_WORKER + (int(worker) % 8 if worker.isdigit() else 0) * _PER_WORKER
    return lo, lo + _PER_WORKER


def free_port() -> int:
    """A port nothing listens on, that no other test process is handed and that the kernel
    never gives an outgoing connection. A port from `bind(0)` is one of the ephemeral range:
    with the suite's files running in parallel, another process's client connection took it
    before the worker bound it ("Address already in use"), or another test was handed it too."""
    lo, hi = _band()
    if not _next:
        _next.append(lo + uuid.uuid4().int % _PER_WORKER)
    for _ in range(_PER_WORKER):
        port = _next[0]
        _next[0] = lo + (port + 1 - lo) % _PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))  # noqa: S104  (free on every address)
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


def create_topics(bootstrap: str, *topics: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    for f in futures.values():
        f.result(30)


def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for i, (k, v) in enumerate(items):
        p.produce(topic, key=k, value=v)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 30) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest"})  # fmt: skip
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WorkerProcess:
    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None):
        self.path = tmp / f"worker-{uuid.uuid4().hex[:6]}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.port = int(config.get("httpPort", 0))
        self.log = tmp / f"{self.path.stem}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_worker", "run", "--config", str(self.path)],
            stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
        )  # fmt: skip
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
