"""Fixtures that hand tests real services from the local stack.

A test asks for a service by fixture; the fixture brings it up through
`hack/stack up` (idempotent, so a running stack is reused) and returns the
connection settings `hack/stack env` prints. A service that cannot be started
fails the test; nothing is skipped or faked.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "hack" / "stack"

_started: set[str] = set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `long` first; otherwise files and tests keep their order (a stable sort).

    hack/test-suite hands whole files to its workers in collection order (`--dist loadfile`):
    collected alphabetically, the operator's minutes-long files came last and the k8s phase
    ended with one of them running alone."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def _stack_env() -> dict[str, str]:
    out = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="session")
def stack() -> Callable[..., dict[str, str]]:
    """`stack("postgres", "kafka")` starts those components and returns the stack's env."""

    def up(*components: str) -> dict[str, str]:
        todo = [c for c in components if c not in _started]
        if todo:
            res = subprocess.run([str(STACK), "up", *todo], capture_output=True, text=True)
            if res.returncode != 0:
                pytest.fail(f"hack/stack up {' '.join(todo)} failed:\n{res.stderr}", pytrace=False)
            _started.update(todo)
        return _stack_env()

    return up


@pytest.fixture(scope="session")
def pg_dsn(stack: Callable[..., dict[str, str]]) -> str:
    return stack("postgres")["PG_DSN"]


@pytest.fixture(scope="session")
def redis_url(stack: Callable[..., dict[str, str]]) -> str:
    return stack("redis")["REDIS_URL"]


@pytest.fixture(scope="session")
def vault_env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    env = stack("vault")
    return {"addr": env["VAULT_ADDR"], "token": env["VAULT_TOKEN"]}


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Callable[..., dict[str, str]]) -> str:
    return stack("kafka")["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that sets up the worker's logging in-process (`cli.main`, `setup_logging`) binds
    structlog and the root handler to that test's captured stderr, which pytest closes after
    it: every later in-process worker would then fail on a closed file."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
