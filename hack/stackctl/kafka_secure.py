"""Kafka's secure profile: a SASL_SSL listener with SCRAM-SHA-512 users and KRaft ACLs.

The PLAINTEXT listener stays for the existing tests and tools: its principal,
User:ANONYMOUS, is a super user, so turning on `StandardAuthorizer` changes nothing
for them. The SASL_SSL listener serves the stack CA's certificate (PEM keystore)
and knows one SCRAM user per client — `agent`, `worker`, `operator` — whose
passwords are generated under <state>/secrets. The ACLs are stack-wide prefixes
(documented in docs/local-stack.md), so a pipeline is secure-profile ready when
its names fall under them:
- topics `secure.*` (the pipeline's `debezium.topicPrefix` starts with `secure.`),
- dead-letter topics `secure-dlq.*`,
- consumer groups `cdc.*` (the operator names every group `cdc.<namespace>.<pipeline>`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import tls
from .core import PORT_OFFSET, REPO, log, run

SASL_PORT = 59094 + PORT_OFFSET
MECHANISM = "SCRAM-SHA-512"
USERS = ("agent", "worker", "operator")
TOPIC_PREFIX = "secure."
DLQ_PREFIX = "secure-dlq."
GROUP_PREFIX = "cdc."
SETUP = REPO / "hack/kafka/SecureSetup.java"

# (user, resource type, pattern type, name, operation)
ACLS = [
    *(("agent", "TOPIC", "PREFIXED", TOPIC_PREFIX, op) for op in ("WRITE", "DESCRIBE", "CREATE")),
    *(("worker", "TOPIC", "PREFIXED", TOPIC_PREFIX, op) for op in ("READ", "DESCRIBE")),
    *(("worker", "GROUP", "PREFIXED", GROUP_PREFIX, op) for op in ("READ", "DESCRIBE")),
    *(("worker", "TOPIC", "PREFIXED", DLQ_PREFIX, op) for op in ("WRITE", "DESCRIBE")),
    *(
        ("operator", "TOPIC", "PREFIXED", prefix, op)
        for prefix in (TOPIC_PREFIX, DLQ_PREFIX)
        for op in ("CREATE", "ALTER", "ALTER_CONFIGS", "DESCRIBE", "DESCRIBE_CONFIGS", "DELETE")
    ),
    ("operator", "GROUP", "PREFIXED", GROUP_PREFIX, "DESCRIBE"),
]


def broker_properties() -> str:
    """SASL, TLS and authorizer settings of the SASL_SSL listener, for server.properties."""
    crt, key = tls.server_cert("kafka")
    keystore = crt.with_name("kafka-keystore.pem")  # PEM keystore: PKCS#8 key, then the chain
    keystore.write_text(key.read_text() + crt.read_text())
    keystore.chmod(0o600)
    ls = "listener.name.sasl_ssl."
    return (
        f"{ls}sasl.enabled.mechanisms={MECHANISM}\n"
        f"{ls}scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        f"{ls}ssl.keystore.type=PEM\n{ls}ssl.keystore.location={keystore}\n"
        f"{ls}ssl.client.auth=none\n"
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
        "super.users=User:ANONYMOUS\n"
    )


def _instructions() -> str:
    lines = [f"user {u} {tls.password_file(f'kafka-{u}')}" for u in USERS]
    lines += ["acl " + " ".join(acl) for acl in ACLS]
    return "\n".join(lines) + "\n"


def setup_marker(state_dir: Path) -> Path:
    """Digest of the users and ACLs applied; kafka.py drops it when it formats new storage."""
    return state_dir / "secure-setup.sha256"


def apply(libs: Path, state_dir: Path, bootstrap: str) -> None:
    """Users and ACLs, once per distinct set (a marker holds its digest; a re-format drops it)."""
    text = _instructions()
    passwords = "".join(tls.password(f"kafka-{u}") for u in USERS)
    digest = hashlib.sha256((text + passwords).encode()).hexdigest()
    marker = setup_marker(state_dir)
    if marker.exists() and marker.read_text().strip() == digest:
        return
    log("kafka: creating the SCRAM users and ACLs of the SASL_SSL listener")
    # No log4j2 configuration: the client library logs errors only, to this command's output.
    run(["java", "-Xmx256m", "-cp", f"{libs}/*", SETUP, bootstrap], input=text)
    marker.write_text(digest + "\n")


def env() -> dict[str, str]:
    out = {
        "KAFKA_SASL_SSL_BOOTSTRAP": f"127.0.0.1:{SASL_PORT}",
        "KAFKA_SASL_MECHANISM": MECHANISM,
        "KAFKA_SECURE_TOPIC_PREFIX": TOPIC_PREFIX,
        "KAFKA_SECURE_DLQ_PREFIX": DLQ_PREFIX,
        "KAFKA_SECURE_GROUP_PREFIX": GROUP_PREFIX,
    }
    for u in USERS:
        out[f"KAFKA_{u.upper()}_USER"] = u
        out[f"KAFKA_{u.upper()}_PASSWORD_FILE"] = str(tls.SECRETS_DIR / f"kafka-{u}.password")
    return out
