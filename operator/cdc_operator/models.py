"""The custom resources' spec and status, as pydantic models: the one source of truth.

`crds/*.yaml` is generated from these models (`cdc-operator crds`), and the
operator validates what it reads with the same models. Cross-field rules are
written once, as CEL (`x-kubernetes-validations`) in the schema, so the API
server rejects invalid objects with a message naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from cdc_operator import cron

GROUP = "casscdc.io"
VERSION = "v1alpha1"

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CQL_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,47}$"
_PG_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_DURATION = r"^([0-9]+(s|m|h))+$"


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretRef(Model):
    name: str = Field(pattern=_NAME, max_length=253, description="Secret in the same namespace")


class CredentialRef(Model):
    """`username` and `password` from a Vault KV v2 path or from a Secret: exactly one."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.vaultPath) != has(self.secretRef)",
                "exactly one of vaultPath or secretRef must be set",
            ),
        )
    )
    vault_path: str | None = Field(
        default=None, min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_./-]+$",
        description="KV v2 path under vault.kvMount holding `username` and `password`",
    )  # fmt: skip
    secret_ref: SecretRef | None = None


_PEM = r"^-----BEGIN CERTIFICATE-----"


def ca_bundle(what: str) -> Any:
    return Field(
        default=None, max_length=65536, pattern=_PEM,
        description=f"PEM CA certificates to verify {what}'s TLS certificate (inline; "
        "the operator mounts it into the Pods that need it)",
    )  # fmt: skip


class CassandraTls(Model):
    """Client encryption to Cassandra (the native transport's TLS)."""

    ca_bundle: str = Field(
        max_length=65536, pattern=_PEM,
        description="PEM CA certificates that signed the Cassandra nodes' certificates",
    )  # fmt: skip
    verify_hostname: bool = Field(
        default=True, description="check the node's certificate names its contact point"
    )


class CassandraSpec(Model):
    contact_points: list[str] = Field(
        min_length=1, max_length=32, description="host:port of the CQL native transport"
    )
    local_datacenter: str = Field(default="datacenter1", min_length=1, max_length=128)
    credentials: CredentialRef | None = None
    tls: CassandraTls | None = None
    manage_table_cdc: bool = Field(
        default=False, description="run ALTER TABLE … WITH cdc = true on the source tables"
    )


class DebeziumSpec(Model):
    topic_prefix: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")
    snapshot_mode: Literal["initial", "never", "always"] = "never"
    config: dict[str, str] = Field(
        default_factory=dict, description="extra connector properties (no secrets)"
    )
    agent_image: str | None = Field(
        default=None, min_length=1, max_length=512,
        description="image of the cdc-agent sidecar (JRE + connector) in the rendered spec",
    )  # fmt: skip
    agent_status_port: int | None = Field(
        default=8090, ge=1, le=65535,
        description="cdc-agent's HTTP port on each Cassandra node, read for AgentsReady and "
        "CaptureHealthy (null: not read)",
    )  # fmt: skip


class TopicSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(oldSelf.partitions) || self.partitions >= oldSelf.partitions",
                "partitions can only grow",
            ),
        )
    )
    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    retention_hours: int = Field(default=168, ge=1, le=87600)


class KafkaSpec(Model):
    bootstrap_servers: str = Field(min_length=1, max_length=2048)
    topic: TopicSpec = Field(default_factory=TopicSpec)
    dead_letter_topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    dead_letter_retention_hours: int = Field(default=720, ge=1, le=87600)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    credentials: CredentialRef | None = Field(
        default=None, description="the workers' SASL identity (and the agent's, in its sidecar)"
    )
    operator_credentials: CredentialRef | None = Field(
        default=None,
        description="the operator's own SASL identity for its admin calls (topics, lag); "
        "default: `credentials`. Never given to the workers",
    )
    ca_bundle: str | None = ca_bundle("Kafka (SSL, SASL_SSL)")
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="Delete removes the topics this pipeline created, with the pipeline",
    )
    adopt_existing_topics: bool = Field(
        default=False,
        description="manage (alter, and with Delete remove) topics that existed before the "
        "pipeline; otherwise such a topic is reported (TopicNotOwned) and left alone",
    )


class PostgresSpec(Model):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=63)
    schema_: str = Field(default="public", alias="schema", pattern=_PG_IDENT)
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = (
        "prefer"
    )
    ca_bundle: str | None = ca_bundle("PostgreSQL (with sslMode verify-ca or verify-full)")
    credentials: CredentialRef


class RedisSpec(Model):
    url: str = Field(
        pattern=r"^rediss?://([^:@/]+@)?[^@]+$",
        description="rediss:// for TLS; may name an ACL user (rediss://user@host:port/0), "
        "never a password",
    )
    ca_bundle: str | None = ca_bundle("Redis (rediss://)")
    credentials: CredentialRef | None = Field(
        default=None, description="only its password is used (the user is in the URL)"
    )


class KubernetesAuth(Model):
    """Vault's Kubernetes auth, as the pipeline's own ServiceAccount (never the operator's)."""

    role: str = Field(min_length=1, max_length=128)
    mount_path: str = Field(default="kubernetes", min_length=1, max_length=128)
    service_account_name: str | None = Field(
        default=None, pattern=_NAME, max_length=253,
        description="ServiceAccount in the pipeline's namespace to log in as; default: "
        "<pipeline>-cdc, created by the operator",
    )  # fmt: skip
    audience: str = Field(
        default="vault", min_length=1, max_length=253,
        description="audience of the short-lived token requested for that ServiceAccount",
    )  # fmt: skip


class VaultAuth(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.kubernetes) != has(self.tokenSecretRef)",
                "exactly one of kubernetes or tokenSecretRef must be set",
            ),
        )
    )
    kubernetes: KubernetesAuth | None = None
    token_secret_ref: SecretKeyRef | None = None


class SecretKeyRef(Model):
    name: str = Field(pattern=_NAME, max_length=253)
    key: str = Field(default="token", min_length=1, max_length=253)


class VaultSpec(Model):
    address: str = Field(
        pattern=r"^https?://.+",
        description="https:// (http:// only where the chart allows security.allowInsecureVault)",
    )
    ca_bundle: str | None = Field(
        default=None, max_length=65536, pattern=_PEM,
        description="PEM CA certificates to verify Vault's TLS certificate",
    )  # fmt: skip
    kv_mount: str = Field(default="secret", min_length=1, max_length=128)
    auth: VaultAuth
    refresh_interval: str = Field(default="5m", pattern=_DURATION)


class Quantities(Model):
    cpu: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str | None = Field(default=None, pattern=r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$")


class Resources(Model):
    requests: Quantities = Field(default_factory=Quantities)
    limits: Quantities = Field(default_factory=Quantities)


class BatchSpec(Model):
    max_events: int = Field(default=10_000, ge=1, le=1_000_000)
    max_wait_ms: int = Field(default=500, ge=1, le=60_000)


class WorkerSpec(Model):
    image: str = Field(min_length=1, max_length=512)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    replicas: int = Field(default=1, ge=0, le=100)
    resources: Resources = Field(default_factory=Resources)
    batch: BatchSpec = Field(default_factory=BatchSpec)
    redact_columns: list[str] = Field(
        default_factory=list, max_length=1000,
        description="columns holding personal data: their values are masked in every log line",
    )  # fmt: skip


class CdcPipelineSpec(Model):
    """A Cassandra → Kafka → PostgreSQL pipeline: connections, connector, workers."""

    cassandra: CassandraSpec
    debezium: DebeziumSpec
    kafka: KafkaSpec
    postgres: PostgresSpec
    redis: RedisSpec | None = None
    vault: VaultSpec | None = None
    worker: WorkerSpec
    paused: bool = False


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class WorkersStatus(Model):
    ready: int = 0
    desired: int = 0


class LagStatus(Model):
    events: int | None = None
    seconds: float | None = None


class CdcPipelineStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    tables: int | None = None
    workers: WorkersStatus | None = None
    lag: LagStatus | None = None
    last_event_time: str | None = None
    worker_summary: str | None = Field(default=None, description="ready/desired, for kubectl get")
    owned_topics: list[str] | None = Field(
        default=None, description="Kafka topics this pipeline created (or adopted)"
    )
    agents: str | None = Field(default=None, description="agents ready/total (cdc-agent)")


class PipelineRef(Model):
    name: str = Field(pattern=_NAME, max_length=253)


class SourceTable(Model):
    keyspace: str = Field(pattern=_CQL_IDENT, max_length=48)
    table: str = Field(pattern=_CQL_IDENT, max_length=48)


class TargetTable(Model):
    schema_: str | None = Field(default=None, alias="schema", pattern=_PG_IDENT)
    table: str | None = Field(default=None, pattern=_PG_IDENT)


class ColumnsSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.include) || !has(self.exclude) || self.exclude.size() == 0",
                "use include or exclude, not both",
            ),
        )
    )
    include: list[str] | None = Field(default=None, max_length=1000)
    exclude: list[str] = Field(default_factory=list, max_length=1000)
    rename: dict[str, str] = Field(default_factory=dict)


class VerifySpec(Model):
    """Periodic proof that PostgreSQL equals Cassandra (a token-range scan; docs/scan.md)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.interval) || !has(self.schedule)",
                "use interval or schedule, not both",
            ),
        )
    )
    interval: str | None = Field(
        default=None, pattern=_DURATION,
        description="from the end of one verify to the start of the next (default 24h when "
        "there is no schedule)",
    )  # fmt: skip
    schedule: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="instead of interval: a cron schedule, 5 fields, UTC (e.g. '30 2 * * *' "
        "or '@daily'; docs/scan.md); a time missed while another scan ran starts when it ends",
        json_schema_extra=cel(*cron.SCHEDULE_RULES),
    )  # fmt: skip
    repair: bool = Field(
        default=False,
        description="repair differences, else report them; with repair, a data gap (events "
        "lost to retention) starts a repair at once, which acknowledges the gap",
    )
    rows_per_second: int = Field(
        default=0, ge=0, le=10_000_000, description="Cassandra rows/s per Pod (0: no limit)"
    )
    parallelism: int = Field(default=1, ge=1, le=16, description="Pods scanning at once")
    consistency: Literal["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL"] = "LOCAL_QUORUM"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            cron.parse(v)
        return v

    @model_validator(mode="after")
    def _one_timing(self) -> VerifySpec:
        if self.interval is not None and self.schedule is not None:
            raise ValueError("use interval or schedule, not both")
        return self

    @property
    def every(self) -> str:
        """The interval in effect (schedule unset)."""
        return self.interval or "24h"


class BackfillSpec(Model):
    """The initial load of rows that existed before the pipeline, with exact write times."""

    enabled: bool = False
    parallelism: int = Field(default=1, ge=1, le=16)


class RereadSpec(Model):
    """Non-frozen collections taken from Cassandra instead of the stream's deltas: for every
    row an event touches, the worker re-reads them (docs/worker.md, "reread")."""

    enabled: bool = False
    consistency: Literal["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL"] = Field(
        default="LOCAL_QUORUM", description="at least what the writes overlap (ALL for ONE)"
    )
    rows_per_second: int = Field(
        default=0, ge=0, le=10_000_000, description="re-read rows/s per worker (0: no limit)"
    )


class TableReplicationSpec(Model):
    """One Cassandra table replicated by a pipeline into one PostgreSQL table."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("self.pipelineRef.name == oldSelf.pipelineRef.name", "pipelineRef is immutable"),
            ("self.source == oldSelf.source", "source is immutable"),
        )
    )
    pipeline_ref: PipelineRef
    source: SourceTable
    target: TargetTable = Field(default_factory=TargetTable)
    columns: ColumnsSpec = Field(default_factory=ColumnsSpec)
    delete_mode: Literal["hard", "soft"] = "hard"
    create_table: bool = True
    verify: VerifySpec | None = None
    backfill: BackfillSpec | None = None
    reread: RereadSpec | None = None


class ScanStatus(Model):
    last_run: str | None = Field(default=None, description="when the last scan finished")
    job: str | None = None
    result: str | None = None
    rows_checked: int | None = None
    rows_differing: int | None = None
    rows_repaired: int | None = None
    duration: str | None = None
    progress: int | None = Field(default=None, description="percent of token slices done")
    next_run: str | None = Field(
        default=None, description="verify: when the next run is due (interval or schedule)"
    )
    trigger: str | None = Field(
        default=None, description="verify: why the last run started (Schedule, Interval, DataGap)"
    )


class TableReplicationStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    topic: str | None = None
    source: str | None = Field(default=None, description="keyspace.table, for kubectl get")
    target: str | None = Field(default=None, description="schema.table, for kubectl get")
    lag: LagStatus | None = None
    last_event_time: str | None = None
    events_applied: int | None = None
    verify: ScanStatus | None = None
    backfill: ScanStatus | None = None


VaultAuth.model_rebuild()
