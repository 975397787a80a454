"""The agent's Kafka password: never in the rendered properties, added only at start.

The operator renders `kafka.producer.sasl.mechanism` (and the TLS trust) but no secret. When
the properties ask for SASL, cdc-agent writes a runtime copy of them, mode 0600 in a private
directory, with `kafka.producer.sasl.jaas.config` built from its own environment —
`KAFKA_USERNAME`/`KAFKA_PASSWORD` or the files named by `KAFKA_USERNAME_FILE`/
`KAFKA_PASSWORD_FILE` (the sidecar's Secret) — and runs the agent on that copy.

The Cassandra login and TLS trust go the same way (driver.py): the runtime copy then also points
`cassandra.driver.config.file` at a 0600 runtime driver config holding them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cdc_worker.agent import driver, props
from cdc_worker.config import ConfigError, secret

RUNTIME_NAME = "agent-runtime.properties"
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


class CredentialsMissing(Exception):
    """The properties ask for SASL and the environment has no (usable) Kafka credentials, or
    the Cassandra login/trust cannot be set up; `hop` names which."""

    def __init__(self, message: str, hop: str = "kafka") -> None:
        super().__init__(message)
        self.hop = hop


def sasl_credentials(env: Mapping[str, str]) -> tuple[str, str]:
    try:
        user, password = secret(dict(env), "KAFKA_USERNAME"), secret(dict(env), "KAFKA_PASSWORD")
    except ConfigError as e:
        raise CredentialsMissing(f"kafka: {e}") from None
    if not user or not password:
        raise CredentialsMissing(
            "kafka: the properties ask for SASL but KAFKA_USERNAME/KAFKA_PASSWORD "
            "(or their *_FILE variants) are not set"
        )
    return user, password


def _jaas_quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prop_escape(v: str) -> str:
    out = []
    for ch in v:
        if ch in "\\\n\r\t\f":
            out.append({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append("".join(f"\\u{u:04x}" for u in _utf16(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def jaas_config(mechanism: str, user: str, password: str) -> str:
    module = LOGIN_MODULES.get(mechanism)
    if module is None:
        raise CredentialsMissing(f"kafka: unsupported SASL mechanism {mechanism!r}")
    return f"{module} required username={_jaas_quote(user)} password={_jaas_quote(password)};"


def runtime_properties(
    config: Path,
    runtime_dir: Path,
    env: Mapping[str, str],
    *,
    workdir: Path | None = None,
    cassandra_trust: driver.CassandraTrust | None = None,
    java: str = "java",
) -> Path:
    """The file the agent runs: `config` itself, or its 0600 runtime copy with the JAAS line
    and/or the runtime driver config (Cassandra login, TLS trust)."""
    text = config.read_text()
    p = props.parse(text)
    extra: list[str] = []
    mechanism = p.get("kafka.producer.sasl.mechanism")
    if mechanism:
        user, password = sasl_credentials(env)
        jaas = _prop_escape(jaas_config(mechanism, user, password))
        extra.append("kafka.producer.sasl.jaas.config=" + jaas)
    try:
        login = driver.cassandra_login(env)
        if login is not None or cassandra_trust is not None:
            conf = Path(p.get("cassandra.driver.config.file", "application.conf"))
            if not conf.is_absolute():
                conf = (workdir or Path()) / conf
            run_conf = driver.runtime_driver_conf(conf, runtime_dir, login, cassandra_trust, java)
            extra.append("cassandra.driver.config.file=" + _prop_escape(str(run_conf)))
    except driver.DriverSetupError as e:
        raise CredentialsMissing(str(e), hop="cassandra") from None
    if not extra:
        return config
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = runtime_dir / RUNTIME_NAME
    tmp = runtime_dir / (RUNTIME_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text.rstrip("\n") + "\n# added by cdc-agent at start (from its environment)\n")
        f.write("\n".join(extra) + "\n")
    tmp.replace(path)
    return path


def remove_runtime(runtime_dir: Path) -> None:
    (runtime_dir / RUNTIME_NAME).unlink(missing_ok=True)
    driver.remove_runtime(runtime_dir)
