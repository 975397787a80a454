"""A Cassandra session as every other client of the pipeline gets one: authenticated, and
encrypted when the config names a CA. Credentials come from CASSANDRA_USERNAME/PASSWORD (or
their *_FILE variants), never from the config file."""

from __future__ import annotations

import os
import ssl
from typing import Any

from cdc_worker.config import CassandraConfig, secret


def cluster(cfg: CassandraConfig, env: dict[str, str] | None = None) -> Any:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    env = dict(os.environ) if env is None else env
    hosts, port = [], 9042
    for cp in cfg.contact_points:
        host, _, p = cp.rpartition(":") if ":" in cp else (cp, "", "")
        hosts.append(host or cp)
        port = int(p) if p else port
    user, password = secret(env, "CASSANDRA_USERNAME"), secret(env, "CASSANDRA_PASSWORD")
    auth = PlainTextAuthProvider(user, password) if user and password else None
    context = None
    if cfg.tls is not None:
        context = ssl.create_default_context(cafile=cfg.tls.ca_file)
        context.check_hostname = cfg.tls.verify_hostname
    return Cluster(
        hosts, port=port, protocol_version=5, auth_provider=auth, ssl_context=context,
        connect_timeout=5, control_connection_timeout=5,
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=cfg.local_datacenter),
    )  # fmt: skip
