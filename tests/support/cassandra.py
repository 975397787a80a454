"""The one way tests and tools reach the stack's Cassandra: TLS verified against the stack CA,
logged in as a role of the stack (hack/stackctl/cassandra_auth.py).

`env` is what `hack/stack env` prints (the `stack` fixture's dict). Roles: `admin` (superuser,
for setting up keyspaces and reading what Cassandra holds), `worker`, `operator`, `agent`.
Passwords are read from the files the stack generated; nothing here prints them.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

ROLE_KEYS = {"admin": "", "worker": "WORKER_", "operator": "OPERATOR_", "agent": "AGENT_"}


def credentials(env: dict[str, str], role: str = "admin") -> tuple[str, str]:
    key = ROLE_KEYS[role]
    user = env[f"CASSANDRA_{key}USERNAME"]
    password = Path(env[f"CASSANDRA_{key}PASSWORD_FILE"]).read_text().strip()
    return user, password


def ssl_context(env: dict[str, str], ca_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file or env["CASSANDRA_CA_FILE"])
    ctx.check_hostname = True
    return ctx


def contact(env: dict[str, str]) -> tuple[list[str], int]:
    points = env["CASSANDRA_CONTACT_POINTS"].split(",")
    return [p.rpartition(":")[0] for p in points], int(points[0].rpartition(":")[2])


def cluster(env: dict[str, str], role: str = "admin", **kw: Any) -> Cluster:
    """A driver Cluster for the stack's nodes (call .connect() on it; shut it down after)."""
    hosts, port = contact(env)
    kw.setdefault("ssl_context", ssl_context(env))
    kw.setdefault("auth_provider", PlainTextAuthProvider(*credentials(env, role)))
    return Cluster(hosts, port=port, **kw)


def worker_env(env: dict[str, str], role: str = "worker") -> dict[str, str]:
    """Environment of a worker (or scanner) process: its login as files, never in clear."""
    key = ROLE_KEYS[role]
    return {
        "CASSANDRA_USERNAME": env[f"CASSANDRA_{key}USERNAME"],
        "CASSANDRA_PASSWORD_FILE": env[f"CASSANDRA_{key}PASSWORD_FILE"],
    }


def worker_config(env: dict[str, str]) -> dict[str, Any]:
    """The `cassandra` section of a worker config (worker.yaml): contact points and TLS."""
    return {
        "contactPoints": env["CASSANDRA_CONTACT_POINTS"].split(","),
        "localDatacenter": env.get("CASSANDRA_LOCAL_DATACENTER", "datacenter1"),
        "tls": {"caFile": env["CASSANDRA_CA_FILE"]},
    }


def pipeline_spec(env: dict[str, str], secret_name: str = "cassandra", **extra: Any) -> Any:  # noqa: S107
    """`spec.cassandra` of a CdcPipeline: TLS with the stack CA, credentials from a Secret
    (`secret_manifest`)."""
    return {
        "contactPoints": env["CASSANDRA_CONTACT_POINTS"].split(","),
        "tls": {"caBundle": Path(env["CASSANDRA_CA_FILE"]).read_text()},
        "credentials": {"secretRef": {"name": secret_name}},
        **extra,
    }


def secret_manifest(
    env: dict[str, str], namespace: str, name: str = "cassandra", role: str = "operator"
) -> dict[str, Any]:
    """A Secret with `username`/`password` of a stack role, for `Cluster.apply` (stdin)."""
    user, password = credentials(env, role)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {"username": user, "password": password},
    }
