"""Redis from Debian's packages on its own port; nothing is persisted (the stack is disposable).

Beside the plaintext port (the `default` user, no password: what the existing tests
and tools use) a TLS port serves the stack CA's certificate (no client
certificates), and the ACL user `cdc` (password generated under <state>/secrets)
may run only what the worker (status.py) and the operator (redis_status.py) need,
on `cdc:*` keys. `default` still works on the TLS port too: the secure profile is
defined by clients using `cdc`, not by taking the plaintext users away.
"""

from __future__ import annotations

import socket
import ssl

from . import tls
from .core import PORT_OFFSET, Component, StackError, run

PORT = 56379 + PORT_OFFSET
TLS_PORT = 56380 + PORT_OFFSET
ACL_USER = "cdc"
# Worker: HSET/HDEL/EXPIRE/HINCRBY (in MULTI/EXEC pipelines), MGET of pause flags; scan Pods:
# HINCRBYFLOAT of a run's seconds. Operator: SET/DEL of pause flags, SCAN + HGETALL of
# heartbeats and counters. +@connection: AUTH, HELLO, PING
# (minus CLIENT KILL and the like, which are also @admin/@dangerous).
ACL_RULES = ("resetkeys", "~cdc:*", "resetchannels", "-@all", "+@connection", "-@admin",
             "-@dangerous", "+get", "+mget", "+set", "+del", "+hset", "+hget", "+hgetall",
             "+hdel", "+hincrby", "+hincrbyfloat", "+expire", "+scan", "+multi", "+exec",
             "+discard")  # fmt: skip


def _resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


def command(*args: str, sock: socket.socket | None = None) -> bytes:
    """One command on the plaintext port (as `default`); the first line of the reply."""
    with sock or socket.create_connection(("127.0.0.1", PORT), timeout=2) as s:
        s.sendall(_resp(*args))
        return s.recv(4096).split(b"\r\n", 1)[0]


class Redis(Component):
    name = "redis"
    ports = (PORT, TLS_PORT)

    def install(self) -> None:
        """Installed from Debian by `hack/stack deps` (hack/packages.txt)."""

    def version(self) -> str:
        return run(["redis-server", "--version"]).stdout.strip()

    def start(self) -> None:
        crt, key = tls.server_cert("redis")
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
                *("--tls-port", str(TLS_PORT), "--tls-cert-file", crt, "--tls-key-file", key),
                *("--tls-ca-cert-file", tls.CA_CRT, "--tls-auth-clients", "no"),
            ]
        )

    def healthy(self) -> bool:
        try:
            if not command("PING").startswith(b"+PONG"):
                return False
            raw = socket.create_connection(("127.0.0.1", TLS_PORT), timeout=2)
            secure = tls.client_context().wrap_socket(raw, server_hostname="localhost")
            return command("PING", sock=secure).startswith(b"+PONG")
        except (OSError, ssl.SSLError):
            return False

    def after_start(self) -> None:
        reply = command("ACL", "SETUSER", ACL_USER, "reset", "on",
                        ">" + tls.password(ACL_USER), *ACL_RULES)  # fmt: skip
        if reply != b"+OK":
            raise StackError(f"redis: ACL SETUSER {ACL_USER} failed: {reply!r}")

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": f"redis://127.0.0.1:{PORT}/0",
            "REDIS_TLS_URL": f"rediss://{ACL_USER}@localhost:{TLS_PORT}/0",
            "REDIS_USER": ACL_USER,
            "REDIS_PASSWORD_FILE": str(tls.SECRETS_DIR / f"{ACL_USER}.password"),
        }
