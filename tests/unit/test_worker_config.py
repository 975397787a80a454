"""Worker config: camelCase YAML, env overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdc_worker.config import ConfigError, load_config

BASE = {
    "pipeline": "orders",
    "kafka": {"bootstrapServers": "k:9092", "groupId": "g", "deadLetterTopic": "dlq"},
    "postgres": {"host": "pg", "database": "dw", "schema": "cdc"},
    "tables": [{"topic": "p.ks.t", "source": {"keyspace": "ks", "table": "t"}}],
}


def _write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "worker.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_valid_config_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE), env={})
    assert cfg.batch.max_events == 10_000
    assert cfg.tables[0].delete_mode == "hard"
    assert cfg.postgres.schema_ == "cdc"


def test_env_overrides(tmp_path: Path) -> None:
    env = {"CDC_KAFKA_BOOTSTRAP_SERVERS": "other:9092", "CDC_BATCH_MAX_EVENTS": "500"}
    cfg = load_config(_write(tmp_path, BASE), env=env)
    assert cfg.kafka.bootstrap_servers == "other:9092"
    assert cfg.batch.max_events == 500


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"batch": {"maxEvents": 0}}, "batch.maxEvents"),
        ({"tables": []}, "tables"),
        ({"postgres": {"dsn": "postgresql://u:secret@h/db"}}, "postgres"),
        ({"kafka": {**BASE["kafka"], "extra": {"sasl.password": "x"}}}, "kafka.extra"),  # type: ignore[dict-item]
        ({"tables": [{"topic": "x", "source": {"keyspace": "ks"}}]}, "tables.0.source.table"),
        ({"tables": [{**BASE["tables"][0], "deleteMode": "purge"}]}, "tables.0.deleteMode"),  # type: ignore[dict-item]
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_config_names_the_field(
    tmp_path: Path, patch: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {**BASE, **patch}), env={})
    assert field in str(err.value)
    assert "u:secret@" not in str(err.value)


def test_password_in_dsn_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    doc = {**BASE, "postgres": {"dsn": "postgresql://u:hunter2@h/db"}}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, doc), env={})
    assert "hunter2" not in str(err.value)
    assert "POSTGRES_PASSWORD" in str(err.value)
