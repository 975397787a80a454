"""Readiness reasons reduced to codes naming the hop (what the pipeline's status may show)."""

from __future__ import annotations

import pytest

from cdc_worker.hops import explain, reason_code


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ('postgres_connect: connection failed: FATAL:  password authentication failed for user '
         '"alice"', "PostgresAuthFailed"),
        ("postgres_connect: connection failed: SSL error: certificate verify failed",
         "PostgresTlsFailed"),
        ("load_offsets: connection refused", "PostgresUnavailable"),
        ("Kafka authentication failed: SASL authentication error: Authentication failed during "
         "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
         "KafkaAuthFailed"),
        ("Kafka TLS failed: SSL handshake failed: certificate verify failed", "KafkaTlsFailed"),
        ("Kafka authentication failed: sasl_ssl://127.0.0.1:59094/bootstrap: SASL authentication "
         "error: Authentication failed during authentication due to invalid credentials",
         "KafkaAuthFailed"),
        ("SchemaPending: Cassandra does not know ['n'] of ks.t yet; retrying", "SchemaPending"),
        ("CassandraUnavailable: Cassandra unavailable for reread: NoHostAvailable",
         "CassandraUnavailable"),
        ("starting", "NotReady"),
    ],
)  # fmt: skip
def test_reason_codes_name_the_hop_and_never_carry_the_text(reason: str, code: str) -> None:
    assert reason_code(reason) == code
    assert "alice" not in explain(reason_code(reason))


def test_explanations() -> None:
    assert explain("PostgresAuthFailed") == "Postgres refused the workers' credentials"
    assert explain("KafkaTlsFailed").startswith("Kafka TLS failed")
    assert explain("SchemaPending") == "SchemaPending"
