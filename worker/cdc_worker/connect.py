"""Client settings for PostgreSQL, Kafka and Redis, with credentials from env or files only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from cdc_worker.config import WorkerConfig, secret

if TYPE_CHECKING:  # imported by redis_client: a worker without Redis never loads it
    import redis


def pg_connect(cfg: WorkerConfig, env: dict[str, str]) -> psycopg.Connection[tuple[Any, ...]]:
    pg = cfg.postgres
    kwargs: dict[str, Any] = {
        "application_name": f"cdc-worker:{cfg.pipeline}",
        "sslmode": pg.ssl_mode,
        "options": "-c TimeZone=UTC -c DateStyle=ISO",
        "connect_timeout": 10,
    }
    if pg.ssl_root_cert:
        kwargs["sslrootcert"] = pg.ssl_root_cert
    user = secret(env, "POSTGRES_USERNAME")
    password = secret(env, "POSTGRES_PASSWORD")
    if user:
        kwargs["user"] = user
    if password:
        kwargs["password"] = password
    if pg.dsn:
        return psycopg.connect(pg.dsn, **kwargs)
    return psycopg.connect(host=pg.host, port=pg.port, dbname=pg.database, **kwargs)


def kafka_settings(cfg: WorkerConfig, env: dict[str, str]) -> dict[str, Any]:
    k = cfg.kafka
    out: dict[str, Any] = {"bootstrap.servers": k.bootstrap_servers, **k.extra}
    out["security.protocol"] = k.security_protocol
    if k.ssl_ca_location:
        out["ssl.ca.location"] = k.ssl_ca_location
    if k.sasl_mechanism:
        out["sasl.mechanism"] = k.sasl_mechanism
        out["sasl.username"] = secret(env, "KAFKA_USERNAME") or ""
        out["sasl.password"] = secret(env, "KAFKA_PASSWORD") or ""
    return out


def redis_password(env: dict[str, str]) -> str | None:
    return secret(env, "REDIS_PASSWORD")


def redis_client(cfg: WorkerConfig, env: dict[str, str], timeout: float) -> redis.Redis:
    """The ACL user from the URL, its password from REDIS_PASSWORD(_FILE), TLS verified
    against `redis.caFile` for rediss:// (host names checked)."""
    import redis

    assert cfg.redis is not None
    kwargs: dict[str, Any] = {}
    if cfg.redis.url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required"
        if cfg.redis.ca_file:
            kwargs["ssl_ca_certs"] = cfg.redis.ca_file
    return redis.Redis.from_url(
        cfg.redis.url, password=redis_password(env), socket_timeout=timeout,
        socket_connect_timeout=timeout, **kwargs,
    )  # fmt: skip
