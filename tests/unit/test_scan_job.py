"""The verify/backfill Indexed Job: shape, slicing, and the worker Pod's restrictions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdc_operator.builders import manifests
from cdc_operator.builders.scan_job import scan_job, scan_job_name
from cdc_operator.models import CdcPipelineSpec
from cdc_worker.cli import SCANS
from cdc_worker.scan.ring import parse_slice

SPEC = CdcPipelineSpec.model_validate({
    "cassandra": {"contactPoints": ["cass-0.cass:9042"]},
    "debezium": {"topicPrefix": "shop"},
    "kafka": {"bootstrapServers": "kafka:9092", "deadLetterTopic": "shop.dlq"},
    "postgres": {"host": "pg", "database": "dw", "schema": "cdc",
                 "credentials": {"vaultPath": "cdc/postgres"}},
    "redis": {"url": "redis://redis:6379/0"},
    "worker": {"image": "localhost/cass-cdc-pg:dev", "replicas": 2,
               "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
})  # fmt: skip
OWNER = {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline", "name": "shop", "uid": "u1",
         "controller": True, "blockOwnerDeletion": True}  # fmt: skip
KEYS = ["POSTGRES_PASSWORD", "POSTGRES_USERNAME", "CASSANDRA_PASSWORD"]


def test_indexed_job_runs_one_slice_per_index() -> None:
    job = scan_job("ns", "shop", OWNER, SPEC, kind="verify", table="sales.orders", slices=8,
                   parallelism=3, run_id="r1", secret_keys=KEYS, rows_per_second=5000)  # fmt: skip
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 8, 3)
    assert spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["image"] == "localhost/cass-cdc-pg:dev"
    assert c["command"] == ["cdc-worker"]
    args = c["args"]
    assert args[0] == "verify"
    assert args[0] in SCANS
    assert args[args.index("--slice") + 1] == "$(JOB_COMPLETION_INDEX)/8"
    assert args[args.index("--table") + 1] == "sales.orders"
    assert args[args.index("--consistency") + 1] == "LOCAL_QUORUM"
    assert args[args.index("--rows-per-second") + 1] == "5000"
    # What the kubelet expands it to is a slice the worker accepts, for every index.
    for i in range(8):
        assert parse_slice(
            args[args.index("--slice") + 1].replace("$(JOB_COMPLETION_INDEX)", str(i))
        )
    assert job["metadata"]["ownerReferences"] == [OWNER]
    assert job["metadata"]["name"] == "shop-verify-sales-orders-r1"


def test_pod_is_as_restricted_as_the_worker_and_uses_its_config_and_secret() -> None:
    job = scan_job("ns", "shop", OWNER, SPEC, kind="backfill", table="sales.orders", slices=2,
                   run_id="abc", secret_keys=KEYS)  # fmt: skip
    dep = manifests.worker_deployment("ns", "shop", OWNER, SPEC, "h", "v", KEYS, 2)
    wpod, jpod = dep["spec"]["template"]["spec"], job["spec"]["template"]["spec"]
    wc, jc = wpod["containers"][0], jpod["containers"][0]
    assert jpod["securityContext"] == wpod["securityContext"]
    assert jc["securityContext"] == wc["securityContext"]
    assert jpod["serviceAccountName"] == wpod["serviceAccountName"]
    assert jpod["automountServiceAccountToken"] is False
    assert jpod["volumes"] == wpod["volumes"]
    assert jc["volumeMounts"] == wc["volumeMounts"]
    assert jc["env"] == wc["env"]  # CDC_WORKER_CONFIG + secretKeyRefs, no literal secrets
    assert all("value" not in e for e in jc["env"] if e["name"] != "CDC_WORKER_CONFIG")
    assert jc["resources"] == wc["resources"]
    assert job["spec"]["parallelism"] == 2
    assert jc["args"][0] == "backfill"


def test_names_and_arguments_are_checked() -> None:
    long = scan_job_name("p" * 40, "backfill", "keyspace_with_long_name.table_x", "run12345")
    assert len(long) <= 63
    assert long.endswith("-run12345")
    with pytest.raises(ValueError, match="slices"):
        scan_job("ns", "shop", OWNER, SPEC, kind="verify", table="a.b", slices=0, run_id="r",
                 secret_keys=[])  # fmt: skip
    with pytest.raises(ValueError, match="run_id"):
        scan_job("ns", "shop", OWNER, SPEC, kind="verify", table="a.b", slices=1, run_id="R_1",
                 secret_keys=[])  # fmt: skip


def test_a_gap_repair_acknowledges_gaps_under_its_run_id() -> None:
    job = scan_job("ns", "shop", OWNER, SPEC, kind="repair", table="sales.orders", slices=2,
                   run_id="v1a2b", secret_keys=KEYS, acknowledge_gaps=True)  # fmt: skip
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--acknowledge-gaps") + 1] == "v1a2b"
    with pytest.raises(ValueError, match="only a repair"):
        scan_job("ns", "shop", OWNER, SPEC, kind="verify", table="sales.orders", slices=1,
                 run_id="v1", secret_keys=KEYS, acknowledge_gaps=True)  # fmt: skip


def test_the_worker_refuses_to_acknowledge_gaps_without_repairing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from cdc_worker.cli import main
    from tests.unit.test_worker_config import BASE

    cfg = tmp_path / "worker.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    assert main(["check-config", "--config", str(cfg)]) == 0
    assert main(["verify", "--config", str(cfg), "--acknowledge-gaps", "r1"]) == 2
    assert "--acknowledge-gaps needs a repair" in capfd.readouterr().err
