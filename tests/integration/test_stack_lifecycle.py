"""`hack/stack` manages its processes by PID: down stops them, up reuses or restarts them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.conftest import STACK

pytestmark = [pytest.mark.integration, pytest.mark.exclusive]


def _pid(component: str) -> int | None:
    out = subprocess.run(
        [str(STACK), "status", component], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[-1]) if "pid" in out else None


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_up_reuses_down_stops_and_dead_process_is_restarted(
    stack: Callable[..., dict[str, str]],
) -> None:
    url = stack("redis")["REDIS_URL"]
    first = _pid("redis")
    assert first is not None
    subprocess.run([str(STACK), "up", "redis"], check=True, capture_output=True)
    assert _pid("redis") == first, "a healthy component must be reused"

    subprocess.run([str(STACK), "down", "redis"], check=True, capture_output=True)
    assert not _alive(first)
    assert _pid("redis") is None
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()

    subprocess.run([str(STACK), "up", "redis"], check=True, capture_output=True)
    second = _pid("redis")
    assert second is not None
    assert second != first
    os.kill(second, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(second) and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run([str(STACK), "up", "redis"], check=True, capture_output=True)
    third = _pid("redis")
    assert third is not None
    assert third != second
    assert redis.Redis.from_url(url).ping()


def test_foreign_process_on_the_port_is_not_mistaken_for_ours(
    stack: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    stack("redis")
    env = {**os.environ, "CDC_STACK_STATE": str(tmp_path)}
    res = subprocess.run([str(STACK), "up", "redis"], capture_output=True, text=True, env=env)
    assert res.returncode != 0
    assert "already in use by a process this stack did not start" in res.stderr


def test_failed_start_exits_nonzero_with_log_tail(tmp_path: Path) -> None:
    env = {**os.environ, "CDC_STACK_STATE": str(tmp_path)}
    # A data directory the server rejects: `up` must fail and show the server's own complaint.
    data = tmp_path / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    subprocess.run([str(STACK), "down", "postgres"], check=True, capture_output=True)
    try:
        res = subprocess.run(
            [str(STACK), "up", "postgres"], capture_output=True, text=True, env=env
        )
    finally:
        subprocess.run([str(STACK), "up", "postgres"], check=True, capture_output=True)
    assert res.returncode != 0
    assert "stack: error: postgres exited; last lines of" in res.stderr
    assert "postgresql.conf" in res.stderr
