"""The product end to end, as `make demo` runs it, in a smaller form.

Operator Pod (from the chart, on the local node, from the image) → rendered Debezium config run
by this node's agent → worker Pod → PostgreSQL. Rows that existed before the pipeline arrive
through the connector's snapshot; then inserts, updates, row and partition deletes, a cleared
column and a schema change. PostgreSQL must equal Cassandra.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800), pytest.mark.k8s, pytest.mark.long]
ROOT = Path(__file__).resolve().parents[2]


def test_postgres_equals_cassandra_end_to_end(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo" / "run.py"), "--events", "400",
         "--customers", "40", "--seed", "7", "--summary", str(summary)],
        capture_output=True, text=True, timeout=1700, check=False,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert summary.exists(), out[-4000:]
    result = json.loads(summary.read_text())
    tables = result["tables"]
    assert tables["customers"]["cassandra"] >= 40, "rows from before the pipeline are missing"
    assert tables["orders"]["cassandra"] > 0
    for name, t in tables.items():
        assert (t["cassandra"], t["cassandra_sum"]) == (t["postgres"], t["postgres_sum"]), (
            f"{name} differs\n{out[-4000:]}"
        )
    assert result["equal"] is True
    # The product's own verify (a scan Job per table, through the operator) agrees.
    assert result["inSync"] == {"customers": "True", "orders": "True"}, out[-4000:]
    assert res.returncode == 0, out[-4000:]
    kinds = result["events"]
    assert kinds.get("alter table add column") == 1
    assert kinds.get("delete order", 0) > 0
    assert kinds.get("update customer", 0) > 0
    assert kinds.get("delete all orders of a customer (partition)", 0) > 0
    assert kinds.get("clear a column", 0) > 0
    assert "Cassandra and PostgreSQL are EQUAL" in res.stdout
