"""cdc-agent adds the Kafka login at start: the rendered properties never hold the password,
the 0600 runtime copy does (and a missing credential names the hop)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cdc_operator.builders.debezium import properties
from cdc_operator.models import CdcPipelineSpec
from cdc_worker.agent import props
from cdc_worker.agent.config import kafka_conf
from cdc_worker.agent.credentials import CredentialsMissing, runtime_properties

CA = "-----BEGIN CERTIFICATE-----\nMIIBxTCCAWugAwIBAgIUQ\n-----END CERTIFICATE-----\n"
PASSWORD = 'p"a\\ss wörd'


def spec() -> CdcPipelineSpec:
    return CdcPipelineSpec.model_validate({
        "cassandra": {"contactPoints": ["127.0.0.1:9042"]},
        "debezium": {"topicPrefix": "secure.shop"},
        "kafka": {"bootstrapServers": "127.0.0.1:59094", "deadLetterTopic": "secure-dlq.shop",
                  "securityProtocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512",
                  "credentials": {"vaultPath": "cdc/kafka-agent"}, "caBundle": CA},
        "postgres": {"host": "localhost", "database": "cdc",
                     "credentials": {"vaultPath": "cdc/pg"}},
        "worker": {"image": "cass-cdc-pg:dev"},
    })  # fmt: skip


def test_rendered_properties_carry_tls_and_mechanism_but_no_secret(tmp_path: Path) -> None:
    text = properties("shop", spec(), [], "127.0.0.1:9042")
    p = props.parse(text)
    assert p["kafka.producer.security.protocol"] == "SASL_SSL"
    assert p["kafka.producer.sasl.mechanism"] == "SCRAM-SHA-512"
    assert p["kafka.producer.ssl.truststore.type"] == "PEM"
    assert p["kafka.producer.ssl.truststore.certificates"] == CA.strip()
    assert "jaas" not in text
    assert "password" not in text.lower()


def test_runtime_copy_has_the_login_and_is_private(tmp_path: Path) -> None:
    rendered = tmp_path / "config.properties"
    rendered.write_text(properties("shop", spec(), [], "127.0.0.1:9042"))
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    env = {"KAFKA_USERNAME": "agent", "KAFKA_PASSWORD_FILE": str(pw_file)}
    run = runtime_properties(rendered, tmp_path / "run", env)
    assert run != rendered
    assert PASSWORD not in rendered.read_text()
    assert stat.S_IMODE(run.stat().st_mode) == 0o600
    assert stat.S_IMODE(run.parent.stat().st_mode) == 0o700
    jaas = props.parse(run.read_text())["kafka.producer.sasl.jaas.config"]
    assert jaas == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="agent" password="p\\"a\\\\ss wörd";'
    )
    # Everything else is the rendered file, unchanged.
    assert run.read_text().startswith(rendered.read_text())
    # cdc-agent's own Kafka probe uses the same identity and trust.
    conf = kafka_conf(props.parse(rendered.read_text()), env)
    assert conf["sasl.username"] == "agent"
    assert conf["sasl.password"] == PASSWORD
    assert conf["ssl.ca.pem"] == CA.strip()


def test_no_sasl_runs_the_rendered_file_and_missing_credentials_name_kafka(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain.properties"
    plain.write_text("topic.prefix=x\nkafka.producer.security.protocol=PLAINTEXT\n")
    assert runtime_properties(plain, tmp_path / "run", {}) == plain
    rendered = tmp_path / "config.properties"
    rendered.write_text(properties("shop", spec(), [], "127.0.0.1:9042"))
    with pytest.raises(CredentialsMissing, match=r"^kafka: .*KAFKA_USERNAME"):
        runtime_properties(rendered, tmp_path / "run", {"KAFKA_USERNAME": "agent"})


def _stack_ca(tmp_path: Path) -> Path:
    import subprocess

    ca = tmp_path / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         str(tmp_path / "ca.key"), "-subj", "/CN=unit-ca", "-days", "1", "-out", str(ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ca


def test_cassandra_login_and_tls_go_to_a_private_runtime_driver_config(tmp_path: Path) -> None:
    from cdc_worker.agent.driver import CassandraTrust, hocon_string

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "application.conf").write_text(
        "datastax-java-driver { basic.request.timeout = 5 seconds }\n"
    )
    rendered = tmp_path / "config.properties"
    rendered.write_text("cassandra.driver.config.file=application.conf\ntopic.prefix=t\n")
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    env = {"CASSANDRA_USERNAME": "cdc_agent", "CASSANDRA_PASSWORD_FILE": str(pw_file)}
    trust = CassandraTrust(_stack_ca(tmp_path))
    run = runtime_properties(rendered, tmp_path / "run", env, workdir=workdir,
                             cassandra_trust=trust)  # fmt: skip
    assert run != rendered
    assert PASSWORD not in rendered.read_text()
    conf = Path(props.load(run)["cassandra.driver.config.file"])
    assert conf.parent == tmp_path / "run"
    text = conf.read_text()
    assert text.startswith("datastax-java-driver { basic.request.timeout")
    assert f"password = {hocon_string(PASSWORD)}" in text
    assert "class = PlainTextAuthProvider" in text
    assert "hostname-validation = true" in text
    store = conf.parent / "cassandra-truststore.p12"
    assert store.stat().st_size > 0
    for f in (run, conf, store):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert PASSWORD not in (workdir / "application.conf").read_text()


def test_cassandra_half_a_login_names_the_hop(tmp_path: Path) -> None:
    rendered = tmp_path / "config.properties"
    rendered.write_text("topic.prefix=t\n")
    with pytest.raises(CredentialsMissing, match=r"^cassandra: ") as e:
        runtime_properties(rendered, tmp_path / "run", {"CASSANDRA_USERNAME": "cdc_agent"})
    assert e.value.hop == "cassandra"
    assert runtime_properties(rendered, tmp_path / "run", {}) == rendered
