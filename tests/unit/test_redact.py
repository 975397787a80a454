"""No credential, URL/DSN password or personal column value reaches a log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from cdc_worker.observe import setup_logging
from cdc_worker.redact import MASK, Redactor, secret_values


def test_secret_values_come_from_the_environment_and_files(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-a-file\n")
    env = {"POSTGRES_PASSWORD": "hunter2", "KAFKA_PASSWORD_FILE": str(f), "PATH": "/usr/bin",
           "REDIS_USERNAME": "cdc-user", "VAULT_TOKEN": "s.abcdef",
           "SHORT_PASSWORD": "ab"}  # fmt: skip
    assert sorted(secret_values(env)) == ["from-a-file", "hunter2", "s.abcdef"]


def test_text_rules() -> None:
    r = Redactor(["hunter2"])
    assert r.text("auth failed for hunter2") == f"auth failed for {MASK}"
    assert r.text("postgresql://cdc:pw-in-url@db:5432/x") == f"postgresql://cdc:{MASK}@db:5432/x"
    assert r.text("host=db password=abc user=x") == f"host=db password={MASK} user=x"
    assert r.text('org.apache.kafka...ScramLoginModule required username="w" password="p";') == (
        f'org.apache.kafka...ScramLoginModule required username="w" password={MASK};'
    )
    assert r.value({"row": {"email": "a@b.c", "id": 1}}, None) == {"row": {"email": "a@b.c",
                                                                           "id": 1}}  # fmt: skip
    cols = Redactor([], ["email"])
    assert cols.value({"row": {"email": "a@b.c", "id": 1}}) == {"row": {"email": MASK, "id": 1}}


def test_the_worker_log_pipeline_masks_messages_and_exceptions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret-value")
    setup_logging("INFO", ["email"])
    log = structlog.get_logger("t")
    try:
        raise RuntimeError("connection to db failed: password s3cret-value rejected")
    except RuntimeError:
        log.exception("write_failed", dsn="postgresql://u:s3cret-value@h/db", email="a@b.c")
    logging.getLogger("driver").warning("login with s3cret-value failed")
    err = capsys.readouterr().err
    assert "s3cret-value" not in err
    assert "a@b.c" not in err
    line = json.loads(err.splitlines()[0])
    assert line["email"] == MASK
    assert MASK in line["exception"]
