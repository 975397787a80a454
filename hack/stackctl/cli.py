"""`hack/stack up|down|restart|status|env|logs|tool`: one entry point for the local stack.

Components are started in dependency order and stopped in reverse; every
command acts on all components unless some are named. `up X` also starts what X
requires; `down X` stops X and whatever requires X, never X's dependencies (so
`down debezium` leaves the shared Kafka running).

`up`, `down` and `restart` hold the stack's lock (`<state>/stack.lock`) for their whole run:
the test suite runs its files in parallel (hack/test-suite), and two `up debezium` at once
would otherwise both find it stopped and start two agents.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import shlex
import subprocess
import sys
from collections.abc import Iterator

from . import deps, ports, tls, tools
from .cassandra_ring import Cassandra
from .core import STATE, Component, StackError, log
from .debezium_ring import DebeziumRing
from .k8s import BUILD as K8S_BUILD
from .k8s import K8s
from .kafka_cluster import Kafka
from .kwok import Kwok
from .node import Node
from .postgres import Postgres
from .redis import Redis
from .vault import Vault

COMPONENTS: dict[str, type[Component]] = {
    c.name: c for c in (Postgres, Redis, Vault, Kafka, Cassandra, DebeziumRing, K8s, Node, Kwok)
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


def _with_dependents(names: list[str]) -> list[Component]:
    """The named components and everything that requires them, dependents first."""
    chosen = set(names)
    changed = True
    while changed:
        changed = False
        for n, cls in COMPONENTS.items():
            if n not in chosen and chosen.intersection(cls.requires):
                chosen.add(n)
                changed = True
    order = [c.name for c in _ordered(list(COMPONENTS))]
    return [COMPONENTS[n]() for n in reversed(order) if n in chosen]


def _down(names: list[str]) -> None:
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise StackError(f"unknown component(s) {unknown}; known: {', '.join(COMPONENTS)}")
    for c in _with_dependents(names):
        if c.down():
            log(f"{c.name}: stopped")


def _prebuild_k8s() -> subprocess.Popen[bytes] | None:
    """Start the Kubernetes build (CPU-bound, ~13 min cold) while the other components
    download and start (network-bound); `k8s` then waits for it on the build's lock."""
    if not K8s.needs_build():
        return None
    log("k8s: building in the background while the other components start")
    return subprocess.Popen(["bash", str(K8S_BUILD), "--quiet"], stdout=subprocess.DEVNULL)


def _change(cmd: str, names: list[str]) -> None:
    ports.reserve()
    if cmd == "up":
        todo = _ordered(names or list(DEFAULT_UP))
        early = _prebuild_k8s() if any(c.name == "k8s" for c in todo) else None
        try:
            for c in todo:
                log(f"{c.name}: {c.up()}")
        finally:
            if early is not None and early.poll() is None:
                early.wait()
    elif cmd == "down":
        # Stops the named components and what depends on them, never their dependencies.
        _down(names or list(COMPONENTS))
    else:
        _down(names)
        for c in _ordered(names):
            log(f"{c.name}: {c.up()}")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "stack.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another hack/stack up/down/restart holds the stack's lock; waiting")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hack/stack", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("up", "down", "restart", "status"):
        sub.add_parser(cmd).add_argument("components", nargs="*")
    sub.add_parser("env")
    sub.add_parser("deps", help="install the missing Debian packages, then run doctor")
    sub.add_parser("doctor", help="report prerequisites and packages, with fixes")
    sub.add_parser("versions")
    sub.add_parser("logs").add_argument("component")
    tool = sub.add_parser("tool", help="print a built tool's path (promtool, helm), building it")
    tool.add_argument("name", choices=sorted(tools.TOOLS))
    args = ap.parse_args(argv)
    try:
        if args.cmd in ("deps", "doctor"):
            if args.cmd == "deps":
                deps.install()
            lines, ok = deps.doctor()
            print("\n".join(lines), file=sys.stderr if ok and args.cmd == "deps" else sys.stdout)
            return 0 if ok else 1
        if args.cmd == "tool":
            print(tools.path(args.name))
            return 0
        if args.cmd in ("up", "restart", "versions"):
            deps.install()
        if args.cmd in ("up", "down", "restart"):
            with _locked():
                _change(args.cmd, args.components)
        elif args.cmd == "status":
            for c in _ordered(args.components or list(COMPONENTS)):
                pid = c.proc.pid()
                print(f"{c.name:<10} {c.status():<10} {'pid ' + str(pid) if pid else ''}")
        elif args.cmd == "env":
            for k, v in tls.env().items():
                print(f"export {k}={shlex.quote(v)}")
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
