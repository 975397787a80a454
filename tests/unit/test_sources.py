"""New columns are never guessed: without Cassandra's word the batch waits."""

from __future__ import annotations

import pytest

from cdc_worker.config import CassandraConfig
from cdc_worker.sources import SchemaPending, confirm_new_columns
from tests.support.worker_proc import free_port


def test_without_cassandra_in_the_config_new_columns_wait() -> None:
    with pytest.raises(SchemaPending, match="no `cassandra`"):
        confirm_new_columns(["extra"], None, "ks", "t")


def test_unreachable_cassandra_means_wait_and_retry_not_a_guess() -> None:
    cfg = CassandraConfig.model_validate({"contactPoints": [f"127.0.0.1:{free_port()}"]})
    with pytest.raises(SchemaPending, match="cannot be asked"):
        confirm_new_columns(["extra"], cfg, "ks", "t")
