"""Process bookkeeping shared by every local-stack component.

The stack runs real services as plain processes (no container engine here), so
this module owns the three things every component needs: where caches and
state live, how a process is started detached and recorded by PID (with its
kernel start time, so a recycled PID is never mistaken for ours), and how it is
stopped again by that PID alone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("CDC_STACK_STATE", REPO / ".stack"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cass-cdc-pg"
# Shifts every port, so a second checkout (e.g. a CI rehearsal) can run its own stack beside ours.
PORT_OFFSET = int(os.environ.get("CDC_STACK_PORT_OFFSET", "0"))


class StackError(RuntimeError):
    """A component could not be installed or started; the message says why."""


def log(msg: str) -> None:
    print(f"stack: {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | os.PathLike[str]], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a short command, raising StackError with its output on failure."""
    res = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if res.returncode != 0:
        raise StackError(
            f"{' '.join(str(c) for c in cmd)} exited {res.returncode}:\n{res.stdout}{res.stderr}"
        )
    return res  # type: ignore[no-any-return]


def is_root() -> bool:
    return os.geteuid() == 0


def tcp_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Proc:
    """One long-running process of a component, recorded in <state>/<name>.pid."""

    name: str
    state_dir: Path
    pid_file: Path = field(init=False)
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pid_file = self.state_dir / f"{self.name}.pid"
        self.log_file = self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded PID if that very process is still alive (not a zombie)."""
        try:
            pid_s, started = self.pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_s)
        if _start_time(pid) != started:
            return None
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return None
        except OSError:
            return None
        return pid

    def alive(self) -> bool:
        return self.pid() is not None

    def start(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        started = _start_time(proc.pid)
        self.pid_file.write_text(f"{proc.pid} {started}\n")
        return proc.pid

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> bool:
        """Signal the recorded PID, then SIGKILL its process group; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_until(lambda: not self.alive(), timeout):
            log(f"{self.name} (pid {pid}) ignored {sig.name}; killing its process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_until(lambda: not self.alive(), 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Component:
    """A service of the local stack. Subclasses fill in install/start/healthy/env."""

    name: str = ""
    requires: tuple[str, ...] = ()
    start_timeout: float = 60.0
    stop_signal: signal.Signals = signal.SIGTERM
    ports: tuple[int, ...] = ()

    def __init__(self) -> None:
        self.state_dir = STATE / self.name
        self.proc = Proc(self.name, self.state_dir)

    def busy_ports(self) -> list[int]:
        """Ports this component needs that something already serves (on 127.0.0.1)."""
        return [p for p in self.ports if tcp_open(p)]

    def install(self) -> None:
        """Fetch or build what the component runs; cached outside the repo, keyed by version."""

    def start(self) -> None:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def after_start(self) -> None:
        """One-time setup once healthy (databases, mounts); must be idempotent."""

    def env(self) -> dict[str, str]:
        return {}

    def version(self) -> str:
        return ""

    def up(self) -> str:
        self.install()
        if self.proc.alive():
            if wait_until(self.healthy, 5):
                self.after_start()
                return "running"
            log(f"{self.name}: running but not healthy, restarting")
            self.proc.stop(self.stop_signal)
        busy = self.busy_ports()
        if busy:
            raise StackError(
                f"{self.name}: port(s) {busy} already in use by a process this stack did not start "
                f"(state {self.state_dir}); stop it or run `hack/stack down` from its checkout"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.start()
        ok = wait_until(lambda: self.healthy() or not self.proc.alive(), self.start_timeout, 0.5)
        if not ok or not self.healthy():
            why = (
                "exited"
                if not self.proc.alive()
                else f"not healthy after {self.start_timeout:.0f}s"
            )
            tail = self.proc.tail()
            self.proc.stop(self.stop_signal)
            raise StackError(f"{self.name} {why}; last lines of {self.proc.log_file}:\n{tail}")
        self.after_start()
        return "started"

    def down(self) -> bool:
        return self.proc.stop(self.stop_signal)

    def status(self) -> str:
        if not self.proc.alive():
            return "stopped"
        return "healthy" if self.healthy() else "unhealthy"
