"""`hack/stack up|down|status|env|logs`: one entry point for the local stack.

Components are started in dependency order and stopped in reverse; every
command acts on all components unless some are named.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .cassandra import Cassandra
from .core import Component, StackError, log
from .debezium import Debezium
from .k8s import K8s
from .kafka import Kafka
from .postgres import Postgres
from .redis import Redis
from .vault import Vault

COMPONENTS: dict[str, type[Component]] = {
    c.name: c for c in (Postgres, Redis, Vault, Kafka, Cassandra, Debezium, K8s)
}
DEFAULT_UP = ("postgres", "redis", "vault", "kafka")


def _ordered(names: list[str]) -> list[Component]:
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise StackError(f"unknown component(s) {unknown}; known: {', '.join(COMPONENTS)}")
    out: list[str] = []

    def visit(n: str) -> None:
        for dep in COMPONENTS[n].requires:
            visit(dep)
        if n not in out:
            out.append(n)

    for n in names:
        visit(n)
    return [COMPONENTS[n]() for n in out]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hack/stack", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("up", "down", "status"):
        sub.add_parser(cmd).add_argument("components", nargs="*")
    sub.add_parser("env")
    sub.add_parser("versions")
    sub.add_parser("logs").add_argument("component")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            for c in _ordered(args.components or list(DEFAULT_UP)):
                log(f"{c.name}: {c.up()}")
        elif args.cmd == "down":
            for c in reversed(_ordered(args.components or list(COMPONENTS))):
                if c.down():
                    log(f"{c.name}: stopped")
        elif args.cmd == "status":
            for c in _ordered(args.components or list(COMPONENTS)):
                pid = c.proc.pid()
                print(f"{c.name:<10} {c.status():<10} {'pid ' + str(pid) if pid else ''}")
        elif args.cmd == "env":
            for c in _ordered(list(COMPONENTS)):
                for k, v in c.env().items():
                    if k == "PATH":  # directories to prepend; "$PATH" must expand in the shell
                        head = v.removesuffix(":$PATH")
                        print(f'export PATH={shlex.quote(head)}:"$PATH"')
                    else:
                        print(f"export {k}={shlex.quote(v)}")
        elif args.cmd == "versions":
            for c in _ordered(list(COMPONENTS)):
                c.install()
                print(f"{c.name:<10} {c.version()}")
        elif args.cmd == "logs":
            c = _ordered([args.component])[-1]
            sys.stdout.write(
                c.proc.log_file.read_text(errors="replace") if c.proc.log_file.exists() else ""
            )
    except (StackError, OSError) as e:
        print(f"stack: error: {e}", file=sys.stderr)
        return 1
    return 0
