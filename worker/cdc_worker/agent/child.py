"""The Debezium agent as a child process: its command line, its output, stopping it.

The child stays in the supervisor's process group, so whoever stops the supervisor's group
(the stack's SIGKILL fallback, a container runtime) stops the JVM with it. Its stdout and
stderr are one pipe: every line is copied unchanged to the supervisor's stdout (the agent's
log stays where operators expect it) and handed to a callback that reads the phase and errors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

# The JDK 17 options the connector's own build runs its Cassandra 5 tests with
# (Cassandra's jvm17-clients.options plus java.io and java.nio).
JVM17_OPTIONS = (
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
)
BASE_OPTIONS = ("-XX:+UseG1GC", "-Djava.net.preferIPv4Stack=true")


def command(java: str, java_opts: Sequence[str], jar: Path, config: Path) -> list[str]:
    """`java <options> -jar <jar-with-dependencies> <config.properties>`; later options win."""
    return [java, *BASE_OPTIONS, *JVM17_OPTIONS, *java_opts, "-jar", str(jar), str(config)]


class Child:
    def __init__(self, cmd: Sequence[str], cwd: Path, on_line: Callable[[str], None]) -> None:
        self.cmd = list(cmd)
        self.cwd = cwd
        self.on_line = on_line
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> int:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(
            target=self._pump, args=(self.proc,), name="agent-log", daemon=True
        )
        self._reader.start()
        return self.proc.pid

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        out = sys.stdout.buffer
        for raw in proc.stdout:
            out.write(raw)
            out.flush()
            self.on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Forward a signal (safe to call from a signal handler)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                return

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; the exit code (None if never started)."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return code
