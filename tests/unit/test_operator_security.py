"""Trust boundaries that need no cluster: admin policy, property escaping, topic claims."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_operator import kafka_step
from cdc_operator.appliers import credentials
from cdc_operator.builders import manifests
from cdc_operator.builders.debezium import _escape, properties
from cdc_operator.models import CdcPipelineSpec
from cdc_operator.security import Policy
from cdc_worker.config import PostgresConfig

BASE: dict[str, Any] = {
    "cassandra": {"contactPoints": ["cass-0:9042"]},
    "debezium": {"topicPrefix": "shop"},
    "kafka": {"bootstrapServers": "k1:9092,k2:9092", "deadLetterTopic": "shop.dlq"},
    "postgres": {"host": "pg", "database": "dw", "credentials": {"vaultPath": "team-a/pg"}},
    "vault": {"address": "http://vault:8200", "auth": {"kubernetes": {"role": "a"}}},
    "worker": {"image": "localhost/cass-cdc-pg:1.0"},
}


def spec(**over: Any) -> CdcPipelineSpec:
    return CdcPipelineSpec.model_validate({**BASE, **over})


def test_image_allow_list_is_globs_and_empty_means_any() -> None:
    p = Policy(allow_insecure_vault=False,
               allowed_images=("localhost/cass-cdc-pg:*", "localhost/cass-cdc-pg@*"))  # fmt: skip
    assert p.image_allowed("localhost/cass-cdc-pg:1.0")
    assert p.image_allowed("localhost/cass-cdc-pg@sha256:abc")
    assert not p.image_allowed("localhost/cass-cdc-pg-evil:1.0")
    assert not p.image_allowed("evil.example/localhost/cass-cdc-pg:1.0")
    assert Policy(False, ()).image_allowed("anything:1")


def test_http_vault_is_refused_before_any_connection() -> None:
    asked: list[str] = []

    def token_for(sa: str, aud: str) -> str:
        asked.append(sa)
        return "jwt"

    with pytest.raises(credentials.CredentialsError) as e:
        credentials.resolve(spec(), lambda n: None, token_for, Policy(False, ()))
    assert e.value.reason == "VaultInsecure"
    assert "security.allowInsecureVault" in str(e.value)
    assert asked == []  # not even a token was requested


def test_vault_ca_bundle_must_be_pem() -> None:
    with pytest.raises(ValueError, match="caBundle"):
        spec(vault={**BASE["vault"], "caBundle": "not a certificate"})


def _java_properties(text: str) -> dict[str, str]:
    """java.util.Properties.load, for the escapes the renderer uses (a reader of our own)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        value, i = [], 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\":
                nxt = raw[i + 1]
                if nxt == "u":
                    value.append(chr(int(raw[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                value.append({"n": "\n", "r": "\r", "t": "\t", "f": "\f"}.get(nxt, nxt))
                i += 2
                continue
            value.append(ch)
            i += 1
        out[key] = "".join(value).encode("utf-16", "surrogatepass").decode("utf-16")
    return out


def test_property_values_cannot_break_lines_or_smuggle_keys() -> None:
    sneaky = "x\rsasl.jaas.config=secret\nkafka.producer.password=p\\u0041 é 😀"
    text = properties("p", spec(debezium={"topicPrefix": "shop", "config": {"a.b": sneaky}}),
                      [], "cass-0:9042")  # fmt: skip
    assert "\r" not in text
    assert all(line.startswith(("#", "a.b=")) or "jaas" not in line for line in text.split("\n"))
    assert _java_properties(text)["a.b"] == sneaky
    assert _escape(" lead") == "\\ lead"


@pytest.mark.parametrize("key", ["x=y", "pass\\u0077ord", "a b", "a:b", "a\nb", "#c"])
def test_property_keys_must_be_plain_names(key: str) -> None:
    with pytest.raises(ValueError, match="not property names"):
        properties("p", spec(debezium={"topicPrefix": "shop", "config": {key: "v"}}), [], "c:1")


def test_the_oldest_pipeline_keeps_a_shared_topic_prefix() -> None:
    a = spec()
    b = spec(kafka={**BASE["kafka"], "deadLetterTopic": "other.dlq",
                    "bootstrapServers": "k2:9092, k1:9092"})  # fmt: skip
    old, new = ("2026-01-01T00:00:00Z", "ns1", "a"), ("2026-02-01T00:00:00Z", "ns2", "b")
    holders = {c: [old] for c in kafka_step.claims(a)}
    for c in kafka_step.claims(b):
        holders.setdefault(c, []).append(new)
    assert kafka_step.rival(old, a, holders) is None
    why = kafka_step.rival(new, b, holders)
    assert why == "topic prefix shop is used by pipeline ns1/a"
    # Another Kafka cluster: the same names do not collide.
    c = spec(kafka={**BASE["kafka"], "bootstrapServers": "elsewhere:9092"})
    assert kafka_step.rival(new, c, holders) is None


def test_secret_is_data_and_the_pod_template_carries_no_credential_hash() -> None:
    s = manifests.credentials_secret("ns", "shop", {}, {"POSTGRES_PASSWORD": "hunter2"})
    assert "stringData" not in s
    dep = manifests.worker_deployment("ns", "shop", {}, spec(), "c", "12345", ["X"], 1)
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["casscdc.io/secret-version"] == "12345"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "shop-cdc"


@pytest.mark.parametrize(
    "dsn", ["host=pg dbname=dw password=x", "postgresql://u:p@pg/dw",
            "postgresql://u@pg/dw?password=x"],
)  # fmt: skip
def test_worker_rejects_a_dsn_with_a_password_in_any_form(dsn: str) -> None:
    with pytest.raises(ValueError, match="must not contain a password"):
        PostgresConfig.model_validate({"dsn": dsn})
