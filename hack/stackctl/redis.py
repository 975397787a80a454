"""Redis from Debian's packages on its own port; nothing is persisted (the stack is disposable)."""

from __future__ import annotations

import socket

from .core import PORT_OFFSET, Component, run

PORT = 56379 + PORT_OFFSET


class Redis(Component):
    name = "redis"
    ports = (PORT,)

    def install(self) -> None:
        """Installed from Debian by `hack/stack deps` (hack/packages.txt)."""

    def version(self) -> str:
        return run(["redis-server", "--version"]).stdout.strip()

    def start(self) -> None:
        self.proc.start(
            [
                "redis-server",
                "--port",
                str(PORT),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.state_dir,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ]
        )

    def healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": f"redis://127.0.0.1:{PORT}/0"}
