"""PostgreSQL from Debian's packages on its own port and data directory.

The system service is left alone: the stack runs its own postmaster so tests
never depend on, or disturb, whatever else the machine runs. PostgreSQL refuses
to run as root, so under root the server runs as the packaged `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from . import postgres_tls
from .core import (
    PORT_OFFSET,
    STATE,
    Component,
    StackError,
    is_root,
    log,
    run,
    tcp_open,
)

PORT = 55432 + PORT_OFFSET
USER = "cdc"
PASSWORD = "cdc"  # noqa: S105 - local development stack only
DATABASE = "cdc"


def _bindir() -> Path:
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name),
    )
    if not found or int(found[-1].parent.name) < 15:
        raise StackError("PostgreSQL 15+ server binaries not found under /usr/lib/postgresql")
    return found[-1]


class Postgres(Component):
    name = "postgres"
    ports = (PORT,)
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave

    def __init__(self) -> None:
        super().__init__()
        self.data = self.state_dir / "data"
        self.sock = self.state_dir / "run"
        self.user = "postgres" if is_root() else None

    def install(self) -> None:
        if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
            raise StackError("PostgreSQL is not installed: run `hack/stack deps`")
        if self.user:
            self._make_reachable()

    def _make_reachable(self) -> None:
        """The server user must be able to reach its data directory inside the checkout."""
        pw = pwd.getpwnam(self.user or "")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(
            ["test", "-w", str(self.state_dir.parent)], user=pw.pw_uid, check=False
        )
        if probe.returncode != 0:
            for d in [self.state_dir.parent, *self.state_dir.parent.parents]:
                if d == Path("/"):
                    break
                os.chmod(d, os.stat(d).st_mode | 0o001)
        for d in (self.state_dir, self.sock):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, pw.pw_uid, pw.pw_gid)

    def version(self) -> str:
        return run([_bindir() / "postgres", "--version"]).stdout.strip()

    def _as_server_user(self, cmd: list[str]) -> None:
        run(cmd, user=self.user, cwd="/")

    def start(self) -> None:
        bindir = _bindir()
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            pwfile = self.state_dir / "pwfile"
            pwfile.write_text(PASSWORD + "\n")
            if self.user:
                shutil.chown(pwfile, self.user)
            log("postgres: initdb")
            self._as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    USER,
                    "--pwfile",
                    str(pwfile),
                    "-E",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                    "--auth-local",
                    "trust",
                    "--auth-host",
                    "scram-sha-256",
                ]
            )
            pwfile.unlink()
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# cass-cdc-pg local stack\n"
                    f"listen_addresses = '127.0.0.1'\nport = {PORT}\n"
                    f"unix_socket_directories = '{self.sock}'\n"
                    "max_connections = 200\nshared_buffers = 256MB\n"
                    "max_wal_size = 2GB\nlogging_collector = off\n"
                )
        if (self.data / "postgresql.conf").exists():  # else the server says what is wrong
            postgres_tls.configure(self.data, self.user)
        self.proc.start([bindir / "postgres", "-D", self.data], user=self.user, cwd=Path("/"))

    def healthy(self) -> bool:
        if not tcp_open(PORT):
            return False
        res = subprocess.run(
            [
                str(_bindir() / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(PORT),
                "-d",
                "postgres",
            ],
            check=False,
        )
        return res.returncode == 0 and postgres_tls.tls_offers_scram(PORT, DATABASE)

    def after_start(self) -> None:
        psql = [
            str(_bindir() / "psql"),
            "-h",
            str(self.sock),
            "-p",
            str(PORT),
            "-U",
            USER,
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]).stdout
        if exists.strip() != "1":
            run([*psql, f"CREATE DATABASE {DATABASE}"])
        if postgres_tls.configure(self.data, self.user):
            run([*psql, "SELECT pg_reload_conf()"])
        run([*psql[:-1], "-q", "-f", "-"], input=postgres_tls.role_sql(DATABASE))

    def env(self) -> dict[str, str]:
        return {
            "PG_DSN": f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{PORT}/{DATABASE}",
            **postgres_tls.env(PORT, DATABASE),
        }


__all__ = ["STATE", "Postgres"]
