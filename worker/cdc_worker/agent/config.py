"""`cdc-agent` settings: command-line flags, each defaulting to a `CDC_AGENT_*` variable.

What the agent itself is configured with stays in the properties file the operator renders; the
supervisor reads from it only what it needs to watch the same data path (topic prefix, Kafka
bootstrap and security protocol, the node's cassandra.yaml for its cdc_raw directory).
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from cdc_worker.agent.driver import CassandraTrust

DEFAULT_JAR = "/opt/debezium/debezium-connector-cassandra-5-jar-with-dependencies.jar"


@dataclass(frozen=True)
class Settings:
    config: Path
    jar: Path
    java: str = "java"
    java_opts: tuple[str, ...] = ("-Xms256m", "-Xmx512m")
    workdir: Path = Path()
    cassandra: str = "127.0.0.1:9042"
    cassandra_ca: Path | None = None  # PEM CA of the node's certificate: TLS to the node
    cassandra_verify_hostname: bool = True
    cdc_raw: Path | None = None
    port: int = 8090
    table_poll: float = 10.0
    health_interval: float = 5.0
    stall_after: float = 120.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    stable_after: float = 60.0
    min_restart_interval: float = 10.0
    stop_timeout: float = 25.0
    log_level: str = "INFO"
    runtime_dir: Path | None = None  # the 0600 runtime properties (SASL); default: a temp dir

    def cassandra_trust(self) -> CassandraTrust | None:
        if self.cassandra_ca is None:
            return None
        return CassandraTrust(self.cassandra_ca, self.cassandra_verify_hostname)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CDC_AGENT_{name}", default)


def parse_args(argv: list[str] | None = None) -> Settings:
    ap = argparse.ArgumentParser(
        prog="cdc-agent",
        description="Runs the Debezium Cassandra agent beside this node: restarts it when its "
        "properties or the set of cdc = true tables change, or when it dies; reports per-table "
        "capture health on /metrics, /healthz, /readyz and /status.",
    )
    add = ap.add_argument
    add("--config", default=_env("CONFIG", ""), help="properties file ($CDC_AGENT_CONFIG)")
    add("--jar", default=_env("JAR", DEFAULT_JAR), help="connector jar-with-dependencies")
    add("--java", default=_env("JAVA", "java"))
    add("--java-opts", default=_env("JAVA_OPTS", "-Xms256m -Xmx512m"), help="JVM options")
    add("--workdir", default=_env("WORKDIR", "."), help="the agent's working directory")
    add("--cassandra", default=_env("CASSANDRA", "127.0.0.1:9042"), help="this node, host:port")
    add("--cassandra-ca", default=_env("CASSANDRA_CA_FILE", ""),
        help="PEM CA of the node's certificate: the probe and the agent use TLS, verified "
        "(login: CASSANDRA_USERNAME/PASSWORD or their *_FILE variants)")  # fmt: skip
    add("--cdc-raw", default=_env("CDC_RAW_DIR", ""), help="default: from cassandra.yaml")
    add("--port", type=int, default=int(_env("PORT", "8090")), help="HTTP port")
    add("--table-poll", type=float, default=float(_env("TABLE_POLL_SECONDS", "10")))
    add("--health-interval", type=float, default=float(_env("HEALTH_INTERVAL_SECONDS", "5")))
    add("--stall-after", type=float, default=float(_env("STALL_AFTER_SECONDS", "120")))
    add("--backoff-max", type=float, default=float(_env("BACKOFF_MAX_SECONDS", "60")))
    add("--log-level", default=os.environ.get("CDC_LOG_LEVEL", "INFO"))
    add("--runtime-dir", default=_env("RUNTIME_DIR", ""),
        help="private directory for the runtime properties with the Kafka login (default: a "
        "new temporary directory)")  # fmt: skip
    a = ap.parse_args(argv)
    if not a.config:
        ap.error("--config (or CDC_AGENT_CONFIG) is required")
    return Settings(
        config=Path(a.config),
        jar=Path(a.jar),
        java=a.java,
        java_opts=tuple(shlex.split(a.java_opts)),
        workdir=Path(a.workdir),
        cassandra=a.cassandra,
        cassandra_ca=Path(a.cassandra_ca) if a.cassandra_ca else None,
        cassandra_verify_hostname=_env("CASSANDRA_VERIFY_HOSTNAME", "true").lower() != "false",
        cdc_raw=Path(a.cdc_raw) if a.cdc_raw else None,
        port=a.port,
        table_poll=a.table_poll,
        health_interval=a.health_interval,
        stall_after=a.stall_after,
        backoff_max=a.backoff_max,
        log_level=a.log_level,
        runtime_dir=Path(a.runtime_dir) if a.runtime_dir else None,
    )  # fmt: skip


def kafka_conf(p: dict[str, str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings for reading the table topics the agent's producer writes: the same
    TLS trust and, for SASL, the same identity (from the environment, like the agent's)."""
    conf = {"bootstrap.servers": p.get("kafka.producer.bootstrap.servers", "localhost:9092")}
    for key in ("security.protocol", "sasl.mechanism", "ssl.ca.location"):
        if f"kafka.producer.{key}" in p:
            conf[key] = p[f"kafka.producer.{key}"]
    if p.get("kafka.producer.ssl.truststore.type", "").upper() == "PEM":
        pem = p.get("kafka.producer.ssl.truststore.certificates")
        if pem:
            conf["ssl.ca.pem"] = pem
    if "sasl.mechanism" in conf:
        from cdc_worker.agent.credentials import sasl_credentials

        user, password = sasl_credentials(os.environ if env is None else env)
        conf["sasl.username"], conf["sasl.password"] = user, password
    return conf


def cdc_raw_dir(s: Settings, p: dict[str, str]) -> Path:
    """--cdc-raw, else `cdc_raw_directory` of the node's cassandra.yaml, else the default."""
    if s.cdc_raw is not None:
        return s.cdc_raw
    try:
        conf = yaml.safe_load(Path(p.get("cassandra.config", "")).read_text()) or {}
        if conf.get("cdc_raw_directory"):
            return Path(str(conf["cdc_raw_directory"]))
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    return Path("/var/lib/cassandra/cdc_raw")


def topic_prefix(p: dict[str, str]) -> str:
    return p.get("topic.prefix", "")
