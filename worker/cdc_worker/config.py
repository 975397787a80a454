"""The worker's configuration: a camelCase YAML file (rendered by the operator) plus env.

Credentials never come from this file: PostgreSQL, Kafka and Redis secrets are
read from environment variables or files (`*_FILE`), which is how the operator's
Secret reaches the Pod. A DSN or URL that embeds a password is rejected. Invalid
configuration fails at start with a message naming the field (`ConfigError`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel


class ConfigError(Exception):
    """The configuration is invalid; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class KafkaConfig(_Model):
    bootstrap_servers: str = Field(min_length=1)
    group_id: str = Field(min_length=1)
    dead_letter_topic: str = Field(min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    ssl_ca_location: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _no_secrets(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if "password" in k.lower() or "secret" in k.lower()]
        if bad:
            raise ValueError(f"secrets such as {bad} must come from the environment, not config")
        return v


class PostgresConfig(_Model):
    dsn: str | None = None
    host: str | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    database: str | None = None
    schema_: str = Field(default="public", alias="schema", min_length=1, max_length=63)
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = (
        "prefer"
    )
    ssl_root_cert: str | None = Field(
        default=None, min_length=1, description="CA file for sslMode verify-ca/verify-full"
    )

    @model_validator(mode="after")
    def _where(self) -> PostgresConfig:
        if not self.dsn and not (self.host and self.database):
            raise ValueError("set either `dsn` or both `host` and `database`")
        if self.dsn and _dsn_has_password(self.dsn):
            raise ValueError("`dsn` must not contain a password: use POSTGRES_PASSWORD(_FILE)")
        return self


class RedisConfig(_Model):
    """`rediss://[user@]host:port/db`: the ACL user may be in the URL, its password never."""

    url: str
    ca_file: str | None = Field(default=None, min_length=1, description="CA for rediss://")

    @field_validator("url")
    @classmethod
    def _no_password(cls, v: str) -> str:
        if urlsplit(v).password:
            raise ValueError("`url` must not contain a password: use REDIS_PASSWORD(_FILE)")
        return v


class SourceRef(_Model):
    keyspace: str = Field(min_length=1)
    table: str = Field(min_length=1)


class TargetRef(_Model):
    schema_: str | None = Field(default=None, alias="schema", max_length=63)
    table: str | None = Field(default=None, max_length=63)


class ColumnsConfig(_Model):
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    rename: dict[str, str] = Field(default_factory=dict)


class TableSchemaConfig(_Model):
    """The Cassandra schema of a source table (the operator reads it from Cassandra)."""

    partition_key: list[str] = Field(min_length=1)
    clustering_key: list[str] = Field(default_factory=list)
    descending: list[str] = Field(default_factory=list)
    static: list[str] = Field(default_factory=list)
    columns: dict[str, str] = Field(min_length=1)


class RereadConfig(_Model):
    """Take non-frozen collections from Cassandra instead of the stream (reread.py)."""

    consistency: Literal[
        "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"
    ] = "LOCAL_QUORUM"
    rows_per_second: float = Field(default=0, ge=0)  # 0: unlimited


class TableConfig(_Model):
    topic: str = Field(min_length=1)
    source: SourceRef
    target: TargetRef = Field(default_factory=TargetRef)
    delete_mode: Literal["hard", "soft"] = "hard"
    create_table: bool = True
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    schema_: TableSchemaConfig | None = Field(default=None, alias="schema")
    reread: RereadConfig | None = None


class BatchConfig(_Model):
    max_events: int = Field(default=10_000, ge=1, le=1_000_000)
    max_wait_ms: int = Field(default=500, ge=1, le=60_000)


class CassandraTls(_Model):
    """Client encryption to Cassandra: the CA that signed the nodes' certificates."""

    ca_file: str = Field(min_length=1)
    verify_hostname: bool = True


class CassandraConfig(_Model):
    """Where the worker reads source schemas; it logs in with CASSANDRA_USERNAME/PASSWORD."""

    contact_points: list[str] = Field(min_length=1)
    local_datacenter: str = "datacenter1"
    tls: CassandraTls | None = None


class WorkerConfig(_Model):
    pipeline: str = Field(min_length=1)
    kafka: KafkaConfig
    postgres: PostgresConfig
    redis: RedisConfig | None = None
    cassandra: CassandraConfig | None = None
    tables: list[TableConfig] = Field(min_length=1)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    tombstone_grace_seconds: int = Field(default=864_000, ge=0)
    ttl_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    http_port: int = Field(default=8080, ge=0, le=65535)
    otlp_endpoint: str | None = None
    # Columns whose values are personal data: masked in every log line (redact.py).
    redact_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_topics(self) -> WorkerConfig:
        topics = [t.topic for t in self.tables]
        dup = {t for t in topics if topics.count(t) > 1}
        if dup:
            raise ValueError(f"tables: topic(s) {sorted(dup)} listed more than once")
        return self


# Environment overrides for Kubernetes (the operator sets these from the pipeline spec).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "CDC_PIPELINE": ("pipeline",),
    "CDC_KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrapServers"),
    "CDC_KAFKA_GROUP_ID": ("kafka", "groupId"),
    "CDC_KAFKA_DEAD_LETTER_TOPIC": ("kafka", "deadLetterTopic"),
    "CDC_POSTGRES_DSN": ("postgres", "dsn"),
    "CDC_POSTGRES_HOST": ("postgres", "host"),
    "CDC_POSTGRES_PORT": ("postgres", "port"),
    "CDC_POSTGRES_DATABASE": ("postgres", "database"),
    "CDC_REDIS_URL": ("redis", "url"),
    "CDC_BATCH_MAX_EVENTS": ("batch", "maxEvents"),
    "CDC_BATCH_MAX_WAIT_MS": ("batch", "maxWaitMs"),
    "CDC_HTTP_PORT": ("httpPort",),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("otlpEndpoint",),
}


def _apply_env(doc: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    for var, path in ENV_OVERRIDES.items():
        if var in env:
            node = doc
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = env[var]
    return doc


def _describe(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{where}: {err['msg']}")
    return "invalid worker config: " + "; ".join(lines)


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> WorkerConfig:
    env = dict(os.environ if env is None else env)
    doc: Any = {}
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read worker config {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError("invalid worker config: the document must be a mapping")
    try:
        return WorkerConfig.model_validate(_apply_env(doc, env))
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def secret(env: dict[str, str], name: str) -> str | None:
    """A credential from `NAME` or the file named by `NAME_FILE`."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read {name}_FILE: {e.strerror}") from None
    return None


def _dsn_has_password(dsn: str) -> bool:
    """Both DSN forms: a URL's userinfo, and libpq's `key=value` pairs (psycopg parses them)."""
    import psycopg.conninfo

    if "://" in dsn:
        return bool(urlsplit(dsn).password) or "password=" in (urlsplit(dsn).query or "").lower()
    try:
        return "password" in psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "password" in dsn.lower()
